"""Ray job entry point: `ray job submit --working-dir . -- python jobs/score.py --config jobs/configs/score.yaml`."""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("score"))
