# Thin wrapper: ./dev does the work (it needs no make on a fresh machine).
.PHONY: demo test lint setup
demo test lint setup:
	./dev $@
