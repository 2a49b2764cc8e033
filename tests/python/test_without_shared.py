"""The library without ../shared: set up explicitly, in a child process whose
SCALPEL_SHARED is an empty directory (so neither $SCALPEL_SHARED/data nor the
../shared beside the repository is seen) and whose SCALPEL_DATA is unset.

scalpel.shared_data_dir() is None, the evaluation sets raise FileNotFoundError
saying how to point at the data, and the main job's prompt sets fall back to
the prompts shipped with scalpel. The tokenizer is a tiny BPE tokenizer.json
written here, so the child needs nothing from ../shared."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent("""
    import json, sys
    import scalpel
    from scalpel import data, mainjob, sra

    out = {"shared_dir": None if mainjob.shared_dir() is None else str(mainjob.shared_dir()),
           "shared_data_dir": scalpel.shared_data_dir(),
           "sra.shared_data_dir": None if sra.shared_data_dir() is None else str(sra.shared_data_dir())}
    tok = scalpel.load_tokenizer(sys.argv[1])
    out["encode"] = tok.encode("ab c")
    errors = {}
    for name, call in [("wikitext2", lambda: scalpel.wikitext2(tok)), ("sra.wikitext2", lambda: sra.wikitext2(tok)),
                       ("sra.gsm8k", lambda: sra.gsm8k(2)), ("sra.mbpp", lambda: sra.mbpp(2))]:
        try:
            call()
            errors[name] = "no error"
        except FileNotFoundError as e:
            errors[name] = "FileNotFoundError: " + str(e)
        except Exception as e:
            errors[name] = type(e).__name__ + ": " + str(e)
    out["errors"] = errors
    out["prompts"] = {name: mainjob.load_prompt_set(name, 3) for name in ("harmful", "harmless", "jbb_harmful")}
    out["shipped"] = {"harmful": data.HARMFUL[:3], "harmless": data.HARMLESS[:3]}
    print(json.dumps(out))
""")


def _tiny_tokenizer(path):
    """A byte-free BPE tokenizer.json: the lower-case letters, space, and one merge."""
    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ")}
    vocab["ab"] = len(vocab)
    path.write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]}}))
    return path


def test_without_shared_data_the_library_says_where_to_point(tmp_path):
    empty = tmp_path / "empty-shared"
    empty.mkdir()
    tok = _tiny_tokenizer(tmp_path / "tokenizer.json")
    env = {k: v for k, v in os.environ.items() if k != "SCALPEL_DATA"}
    env["SCALPEL_SHARED"] = str(empty)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tok)], capture_output=True, text=True, timeout=300,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, f"child exited with {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])

    assert out["shared_dir"] == str(empty)  # $SCALPEL_SHARED wins over the ../shared beside the repository
    assert out["shared_data_dir"] is None and out["sra.shared_data_dir"] is None
    assert out["encode"] == [27, 26, 2]
    for name, err in out["errors"].items():
        assert err.startswith("FileNotFoundError: "), (name, err)
        assert "SCALPEL_DATA" in err and "data_dir" in err, (name, err)  # says how to point at the data
    assert "wikitext-2-raw/wiki.test.raw" in out["errors"]["wikitext2"]

    for name, (prompts, source) in out["prompts"].items():
        want = out["shipped"]["harmless" if name == "harmless" else "harmful"]
        assert prompts == want, name
        assert "shipped with scalpel" in source, (name, source)
