// Precompiled header for the binding layer.
#pragma once
#include <torch/extension.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>
