"""`triage listen`: receive studies by C-STORE and triage each once it is complete."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import DEVICE, JSON, MODEL_HELP, echo_json


def listen(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output: spool/, worklists, journal.jsonl, headers/, "
                                  "cache/. Restart with the same --out to resume."),
    ae_title: str = typer.Option("TRIAGE", "--ae-title", help="Our AE title."),
    port: int = typer.Option(11112, "--port", help="DICOM port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind (0.0.0.0: every interface)."),
    stable_seconds: float = typer.Option(30.0, "--stable-seconds",
                                         help="A study is complete after this many seconds "
                                              "without a new instance."),
    allow_ae: str = typer.Option("", "--allow-ae",
                                 help="Comma-separated calling AE titles to accept "
                                      "(default: any)."),
    report_to: str = typer.Option("", "--report-to",
                                  help="Send each study's SR: http(s)://HOST:PORT/dicom-web "
                                       "or dicom://AET@HOST:PORT."),
    rules: Path = typer.Option(None, "--rules", "-r", help="Rules YAML (as for triage run)."),
    alarms: Path = typer.Option(None, "--alarms", envvar="TRIAGE_ALARMS", dir_okay=False,
                                help="Alarm file of `triage monitor` (as for triage run): "
                                     "a device group with an active drift alarm goes to "
                                     "review; re-read whenever it changes."),
    tls_cert: Path = typer.Option(None, "--tls-cert",
                                  help="DICOM TLS: our certificate (PEM); with --tls-key."),
    tls_key: Path = typer.Option(None, "--tls-key", help="The certificate's key (PEM)."),
    tls_ca: Path = typer.Option(None, "--tls-ca",
                                help="Require client certificates issued by this CA (PEM)."),
    device: str = DEVICE,
    json_summary: bool = JSON,
) -> None:
    """Listen for C-STORE; triage each study once no instance arrived for --stable-seconds.

    SIGTERM finishes the study in hand and exits 0; a restart resumes from the spool.
    """
    import signal

    from triage.cli.run import _active_alarms, _ruleset
    from triage.errors import ConfigError
    from triage.io import prepare_out_dir
    from triage.model.device import select_device
    from triage.pacs.listen import ListenConfig, Listener
    from triage.route import Router
    from triage.run.model import load_model

    allowed = tuple(a.strip() for a in allow_ae.split(",") if a.strip())
    for aet in (ae_title, *allowed):
        if not 1 <= len(aet) <= 16 or "\\" in aet or not aet.isprintable():
            raise ConfigError(f"AE title {aet!r} must be 1-16 printable characters without a "
                              f"backslash.")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}.")
    if not stable_seconds > 0:  # 0 would triage a study while its instances still arrive
        raise ConfigError(f"--stable-seconds must be more than 0, got {stable_seconds}.")
    tls = None
    if tls_cert or tls_key or tls_ca:
        from triage.pacs.tls import TlsConfig

        tls = TlsConfig(tls_cert, tls_key, tls_ca)
        tls.server_context()  # bad files are usage errors, before the model loads
    sink = None
    if report_to:
        from triage.pacs.report import create_sink

        sink = create_sink(report_to)
    device = str(select_device(device, option="--device"))
    _active_alarms(alarms)  # a bad alarm file: before the model loads (warns if missing)
    if rules is not None:
        from triage.route.rules import load_rules

        load_rules(rules)  # a bad --rules file too
    prepare_out_dir(out)
    loaded = load_model(model)
    ruleset, _ = _ruleset(rules, loaded.bundle, out)
    router = Router(ruleset, getattr(loaded.bundle, "routing", None) or {},
                    loaded.bundle.train_devices)
    if alarms is not None:
        from triage.monitor.alarms import AlarmState
        from triage.route.router import AlarmWatchingRouter

        def stamp() -> object:
            try:
                status = alarms.stat()
            except FileNotFoundError:
                return None
            return status.st_mtime_ns, status.st_size

        router = AlarmWatchingRouter(router, lambda: AlarmState.load(alarms).active_by_group(),
                                     stamp)
    listener = Listener(out, ListenConfig(ae_title, port, host, stable_seconds, allowed,
                                          tls=tls),
                        bundle=loaded.bundle, router=router, sink=sink,
                        model_name=loaded.name, model_version=loaded.version, device=device)
    signal.signal(signal.SIGTERM, lambda *_: listener.stop())
    try:
        listener.run()
    except KeyboardInterrupt:
        listener.stop()
    if json_summary:  # what the listener triaged, over every run of this --out
        from collections import Counter

        rows = list(listener.journal.rows.values())
        echo_json({"studies": len(rows), "route": dict(Counter(r.route for r in rows)),
                   "worklist": str(out / "worklist.csv")})


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)
