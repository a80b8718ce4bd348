"""Every user error of the ``aptray`` command is one or two lines on stderr naming the fix, and a non-zero exit.

Each case runs the console script in this process (no Ray is started: every one of these errors is found
before the pipeline starts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_aptray


def _aptray(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[int, list[str], dict[str, str] | None]:
    """Exit code, stderr lines and the JSON line (if any) of ``aptray ARGS``."""
    code, line, err = run_aptray(args, capsys, monkeypatch)
    return code, err.strip().splitlines(), line


def _one_error(err: list[str]) -> str:
    """The error line: at most two lines on stderr, the first one naming the error."""
    lines = [ln for ln in err if ln.startswith("aptray:")]
    assert 1 <= len(lines) <= 2 and len(lines) == len(err), err
    assert lines[0].startswith("aptray: error: "), err
    return lines[0]


@pytest.fixture()
def artifact_dir(tmp_path: Path) -> Path:
    """A folder that is not an artifact (no config.json)."""
    d = tmp_path / "not-an-artifact"
    d.mkdir()
    (d / "weights.safetensors").write_bytes(b"x")
    return d


def test_wrong_option_value_names_the_choices(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    code, err, _ = _aptray(["score", str(tmp_path), "--artifact", "a", "--out", "o", "--source", "bogus"], capsys,
                           monkeypatch)
    line = _one_error(err)
    assert code == 2 and "'bogus' is not one of 'adapt', 'beth', 'cdm', 'auditd', 'synthetic'" in line
    assert "aptray score --help" in line


def test_missing_option_and_unknown_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    code, err, _ = _aptray(["score", "x", "--out", "o"], capsys, monkeypatch)
    assert code == 2 and "Missing option '--artifact'" in _one_error(err)
    code, err, _ = _aptray(["scor"], capsys, monkeypatch)
    assert code == 2 and "Did you mean 'score'?" in _one_error(err)
    code, err, _ = _aptray(["run", "x.csv"], capsys, monkeypatch)
    assert code == 2 and "--source" in _one_error(err)


def test_unknown_config_key_suggests_the_known_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("embed:\n  actorz: 2\n")
    code, err, line = _aptray(["score", "x", "--artifact", "a", "--out", "o", "--config", str(cfg)], capsys,
                              monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "ConfigError"
    assert _one_error(err) == "aptray: error: unknown config key embed.actorz: did you mean actors?"


def test_config_value_of_the_wrong_type_names_key_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("embed:\n  actors: many\ntrain:\n  epochs: -1\n")
    code, err, _ = _aptray(["score", "x", "--artifact", "a", "--out", "o", "--config", str(cfg)], capsys,
                           monkeypatch)
    line = _one_error(err)
    assert code == 2 and "embed.actors = 'many'" in line and "valid integer" in line and "1 more" in line
    assert "Traceback" not in "\n".join(err)


def test_missing_config_file_and_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, _ = _aptray(["score", "x", "--artifact", "a", "--out", "o", "--config", str(tmp_path / "no.yaml")],
                           capsys, monkeypatch)
    assert code == 2 and "no.yaml" in _one_error(err)
    code, err, _ = _aptray(["templatize", "beth", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "t")],
                           capsys, monkeypatch)
    assert code == 2 and "no input files found" in _one_error(err) and "nothing-here" in err[0]


def test_missing_model_names_the_install(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, line = _aptray(["embed", str(tmp_path), "--out", str(tmp_path / "e"), "--model",
                               str(tmp_path / "no-model")], capsys, monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "ModelNotFoundError"
    assert "no-model" in _one_error(err)
    # the experiment checks every embedder first (it skipped a missing one and reported nothing skipped, exit 0)
    code, err, line = _aptray(["experiment", str(tmp_path), "--embedders", f"minilm,{tmp_path / 'no-model'}",
                               "--out", str(tmp_path / "x")], capsys, monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "ModelNotFoundError" and "no-model" in _one_error(err)


def test_bad_artifact_says_what_to_pass(artifact_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, line = _aptray(["score", str(tmp_path), "--artifact", str(artifact_dir), "--out",
                               str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "ArtifactError"
    msg = _one_error(err)
    assert "not-an-artifact is not a complete aptray artifact (config.json is missing)" in msg
    assert "aptray train" in msg
    assert not (tmp_path / "o").exists()  # nothing written


def test_verbose_shows_the_traceback(artifact_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, _ = _aptray(["-v", "score", str(tmp_path), "--artifact", str(artifact_dir), "--out",
                            str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "Traceback (most recent call last)" in "\n".join(err)
    assert err[-1].startswith("aptray: error: ")


def test_serve_refuses_a_port_in_use_and_a_missing_artifact_before_ray(
        artifact_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A second ``aptray serve`` on a port another server holds printed that port as its URL while Ray moved its
    replica to the next one (and shared the proxy's port with the first server); a missing artifact was Ray's
    "Deploying application aptray failed" after 36 s, exit 1. Both are now one line, exit 2, before Ray starts."""
    import socket

    monkeypatch.setenv("APTRAY_API_KEY", "cli-errors-key-0123456789")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, err, _ = _aptray(["serve", str(artifact_dir), "--port", str(port)], capsys, monkeypatch)
        msg = _one_error(err)
        assert code == 2 and f"127.0.0.1:{port} is in use by another process" in msg and "--port" in msg
        # Serve's proxy port (--port + 1000) is checked too
        code, err, _ = _aptray(["serve", str(artifact_dir), "--port", str(port - 1000)], capsys, monkeypatch)
        assert code == 2 and f"127.0.0.1:{port} is in use" in _one_error(err)
    code, err, line = _aptray(["serve", str(tmp_path / "nope"), "--port", str(port)], capsys, monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "ArtifactError"
    assert "nope" in _one_error(err)
    code, err, line = _aptray(["serve", str(artifact_dir), "--port", str(port)], capsys, monkeypatch)
    assert code == 2 and "config.json is missing" in _one_error(err)


def test_a_context_or_detector_the_input_cannot_have_is_refused_before_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--aspect Exec`` on BETH events and ``--detector lstm-ae`` on ADAPT process contexts were crashes ("aptray:
    failed: ValueError", exit 1) after Ray had started and the input was embedded."""
    beth = tmp_path / "events.csv"
    beth.write_text("timestamp,processId\n1,2\n")
    code, err, line = _aptray(["run", str(beth), "--source", "beth", "--aspect", "Exec", "--out", str(tmp_path / "a")],
                              capsys, monkeypatch)
    msg = _one_error(err)
    assert code == 2 and line is not None and line["kind"] == "ConfigError"
    assert "beth does not build the Exec context: it builds no process context, or single events without --aspect" \
        in msg
    adapt = tmp_path / "ProcessEvent.csv"
    adapt.write_text("UUID,EVENT_READ\nx,1\n")
    code, err, line = _aptray(["run", str(adapt), "--source", "adapt", "--detector", "lstm-ae", "--out",
                               str(tmp_path / "b")], capsys, monkeypatch)
    msg = _one_error(err)
    assert code == 2 and "lstm-ae trains on windows" in msg and "adapt Event process contexts" in msg
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "embed").exists()  # nothing ran


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """It was the YAML parser's ParserError, exit 1, naming neither file nor line."""
    config = tmp_path / "bad.yaml"
    config.write_text("embed:\n  actors: 1\ntrain: [1, 2\n")
    code, err, line = _aptray(["run", "--out", str(tmp_path / "o"), "--config", str(config)], capsys, monkeypatch)
    msg = _one_error(err)
    assert code == 2 and line is not None and line["kind"] == "ConfigError"
    assert f"{config} line 4, column 1: not valid YAML" in msg and "--config" in msg


def test_a_missing_input_or_a_folder_of_the_wrong_stage_is_refused_before_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``aptray run`` and ``aptray embed --source`` on a missing input started Ray (7 s) and left an empty
    ``OUT/embed``; ``aptray embed`` on a raw trace without ``--source`` and ``aptray train`` on anything but an embed
    output failed inside the stage ("aptray: error: /tmp/x/embeddings")."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "audit.log").write_text('type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=59 success=yes pid=2\n')
    missing = str(tmp_path / "nothing-here")
    for args in (["run", missing, "--source", "beth"], ["embed", missing, "--source", "beth"],
                 ["run", str(raw), "--source", "auditd", "--train", missing]):
        code, err, line = _aptray([*args, "--out", str(tmp_path / "o")], capsys, monkeypatch)
        assert code == 2 and line is not None and line["kind"] == "FileNotFoundError", args
        assert "no input files found" in _one_error(err) and "nothing-here" in err[0], args
    code, err, line = _aptray(["run", str(raw), "--source", "beth", "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and line is not None and line["kind"] == "WrongSourceError"
    assert "audit.log looks like Linux audit.log (--source auditd)" in _one_error(err)
    code, err, _ = _aptray(["embed", str(raw), "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "is not a templatize output" in _one_error(err) and "--source" in err[0]
    code, err, _ = _aptray(["train", str(raw), "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "is not an embed output" in _one_error(err) and "aptray embed" in err[0]
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize("command", ["serve", "serve-config"])
def test_a_second_model_named_default_or_a_name_given_twice_is_refused(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``aptray serve A --model default=DIR`` dropped DIR without a word (ARTIFACT holds that name), and a name
    given twice kept only its last artifact; ``serve-config`` takes ``--model`` as ``serve`` does (it had none)."""
    monkeypatch.setenv("APTRAY_API_KEY", "cli-errors-key-0123456789")
    out = tmp_path / "serve.yaml"
    cmd = [command, str(tmp_path), *(["--out", str(out)] if command == "serve-config" else [])]
    code, err, _ = _aptray([*cmd, "--model", f"default={tmp_path}"], capsys, monkeypatch)
    assert code == 2 and "'default' names serve.artifact (the default model)" in _one_error(err)
    code, err, _ = _aptray([*cmd, "--model", "a=/x", "--model", "a=/y"], capsys, monkeypatch)
    assert code == 2 and "model name 'a' given twice (/x and /y)" in _one_error(err)
    code, err, _ = _aptray([*cmd, "--model", "a"], capsys, monkeypatch)
    assert code == 2 and "expected NAME=ARTIFACT, got 'a'" in _one_error(err)
    code, err, _ = _aptray([*cmd, "--model", "a b=/x"], capsys, monkeypatch)
    assert code == 2 and "model names are 1-64 letters" in _one_error(err)
    assert not out.exists()


def test_serve_waits_out_a_just_stopped_servers_closing_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted right after a stop, ``aptray serve`` found its port held for up to a minute by the old replica's
    closed connections (TCP TIME_WAIT: Ray's replica then binds the next port) and refused it as "in use by another
    process (another aptray serve?)". It now waits while only closing connections hold the port, and says so;
    a port still held after the wait, or one a process listens on, is refused with what holds it."""
    import aptray.commands.serve as serve_cmd
    from aptray.config import ServeConfig

    sc = ServeConfig(port=8000, direct_ingress_port=8000, proxy_port=None)
    states = iter([serve_cmd.CLOSING, serve_cmd.CLOSING, None])
    monkeypatch.setattr(serve_cmd, "port_in_use", lambda host, port: next(states))
    monkeypatch.setattr("time.sleep", lambda s: None)
    serve_cmd.check_ports(sc)  # freed on the third look: no error
    assert next(states, "drained") == "drained"

    import typer

    monkeypatch.setattr(serve_cmd, "port_in_use", lambda host, port: serve_cmd.CLOSING)
    with pytest.raises(typer.BadParameter, match="TIME_WAIT"):  # never freed: refused once the wait is over
        serve_cmd.check_ports(sc)
    monkeypatch.setattr(serve_cmd, "port_in_use", lambda host, port: serve_cmd.IN_USE)
    with pytest.raises(typer.BadParameter, match="in use by another process"):
        serve_cmd.check_ports(sc)
