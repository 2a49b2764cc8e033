// scalpel/errors.hpp — the exception types every public function may throw.
//
// User errors throw a typed exception whose message reads
//   "<what>: expected <X>, got <Y> (<hint>)"
// Broken internal invariants use SCALPEL_ASSERT (std::logic_error). Two different
// things, two different tools. The Python bindings map each type to the
// matching Python exception (see docs/errors.md).
#pragma once

#include <stdexcept>
#include <string>

namespace scalpel {

/// Bad argument value (Python: ValueError).
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Tensor or sequence shapes that do not fit together (Python: ValueError).
class ShapeError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

/// A name that is not known: a hook point, a tensor, a token (Python: KeyError
/// that is also a ValueError, so both `except` forms work).
class UnknownName : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

/// A file or directory that does not exist (Python: FileNotFoundError).
class FileNotFound : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file that exists but is malformed or unsupported; the message names the
/// file, the field and, where it applies, the byte offset (Python:
/// scalpel.FormatError, a RuntimeError).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Input that is well-formed but asks for something scalpel does not support
/// (an architecture, a tokenizer model type, a template construct). Python:
/// scalpel.UnsupportedError, a ValueError.
class Unsupported : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

/// A computation that produced NaN or infinity where a number was needed (a
/// training loss or gradient that diverged). Python: FloatingPointError.
class NumericalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace scalpel

/// Internal invariant: a failure is a bug in scalpel, not in the caller's input.
#define SCALPEL_ASSERT(cond, msg)                                             \
  do {                                                                        \
    if (!(cond)) ::scalpel::detail::assert_fail(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
