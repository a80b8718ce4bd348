"""Ray job entry point: `ray job submit --working-dir . -- python jobs/embed.py --config jobs/configs/embed.yaml`."""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("embed"))
