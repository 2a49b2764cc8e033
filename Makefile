# The two commands of the README. Both set up whatever is missing first
# (Debian packages, .venv, build) and are fast the second time.
.PHONY: setup demo test clean

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/scalpel demo

test: setup
	@bash scripts/test.sh

clean:
	rm -rf build python/scalpel/_scalpel*.so
