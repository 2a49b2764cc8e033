# The commands of the README (demo, test) and the inner-loop `quick`. Each sets up whatever is missing first
# (Debian packages, .venv, build) and is fast the second time.
#   make test    every C++ and Python test (all tiers: unit, oracle, e2e; see pytest.ini)
#   make quick   the inner loop: the C++ tests but the find_package consumer, and the unit tier
.PHONY: setup demo test quick clean

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/scalpel demo

test: setup
	@bash scripts/test.sh

quick: setup
	@bash scripts/test.sh quick

clean:
	rm -rf build python/scalpel/_scalpel*.so
