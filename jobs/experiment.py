"""Ray job entry point: `ray job submit --working-dir . -- python jobs/experiment.py --config jobs/configs/experiment.yaml`."""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("experiment"))
