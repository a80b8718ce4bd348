"""Ray job entry point: `ray job submit --working-dir . -- python jobs/templatize.py --config jobs/configs/templatize.yaml`."""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("templatize"))
