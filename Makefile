# The commands of the README. Each installs what it needs first.
.PHONY: run test bench bench-im fault-suite

run:
	./scripts/run

test:
	./scripts/test

bench:
	./scripts/bench

bench-im:
	./scripts/bench-im

fault-suite:
	./scripts/fault-suite
