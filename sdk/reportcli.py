"""``lightnode report``: the summary and the HTML report of a simulation run, again, from its run.json.

    lightnode report runs/substation                      # writes runs/substation/report.html
    lightnode report runs/substation/run.json --html /tmp/substation.html

Exits 0 once the report is written, whatever the run's verdict (the verdict
is the last line of the summary); 1 if the run record cannot be read.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_path", metavar="RUN_DIR_OR_RUN_JSON", type=click.Path(exists=True))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Where to write the HTML report (default: report.html beside run.json).",
)
def report(run_path: str, html_path: str | None) -> None:
    """Print a simulation run's summary and write its HTML report."""
    from lightnode.errors import LightnodeError
    from lightnode.simulator import report as rep
    from rich.console import Console

    src = Path(run_path)
    folder = src if src.is_dir() else src.parent
    try:
        run = rep.load_run(src)
        rep.print_summary(run, Console())
        out = rep.render_html(run, html_path or folder / rep.REPORT_NAME)
    except (LightnodeError, OSError) as e:
        raise click.ClickException(str(e)) from e
    click.echo("HTML report: %s" % out)
