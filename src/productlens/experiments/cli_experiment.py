"""`productlens experiment list | analyze | plan`: experiment readouts from the warehouse
and sample-size planning. Tables by default, exact JSON with `--json`."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from productlens.metrics.cli import JsonOpt, console, emit, fmt, project_of, table, warehouse

app = typer.Typer(
    name="experiment",
    help="A/B test readouts (SRM, lift with intervals, decision) and planning.",
    no_args_is_help=True,
)


def _fail(message: str) -> NoReturn:
    from productlens.errors import ExperimentInputError

    raise ExperimentInputError(message)


@app.command(name="list")
def list_command(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every experiment: dates, outcome window, variants with weights and users exposed."""
    from productlens.experiments.data import list_experiments

    with warehouse(project_of(ctx)) as engine:
        experiments = list_experiments(engine)
    data = {"experiments": [e.to_dict() for e in experiments]}
    emit(data, as_json, _render_list)


def _render_list(data: dict[str, Any]) -> None:
    rows = [
        (
            e["experiment_id"],
            e["name"] or "",
            (e["start"] or "-")[:10],
            (e["end"] or "-")[:10],
            ", ".join(
                f"{v['name']} {fmt(v['n_users'])}"
                + ("" if v["weight"] is None else f" ({v['weight']:.0%})")
                for v in e["variants"]
            ),
        )
        for e in data["experiments"]
    ]
    console.print(table("Experiments", ["id", "name", "start", "end", "users (weight)"], rows))


MetricOpt = Annotated[
    list[str] | None,
    typer.Option("--metric", help="A metric of [experiments.metrics] (repeatable; default all)."),
]
MethodOpt = Annotated[
    str, typer.Option("--method", help="frequentist, bayesian or sequential (always valid).")
]


@app.command(name="analyze")
def analyze_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The experiment's id or name.")],
    metric: MetricOpt = None,
    method: MethodOpt = "frequentist",
    cuped: Annotated[
        bool, typer.Option("--cuped", help="Adjust with each metric's pre-exposure covariate.")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="A user dimension: device, country, segment, acquisition_channel."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Guards, every metric's lift with its interval, the effect over time, the logistic
    regression, the monthly impact at 100% rollout and a decision in words."""
    from productlens.experiments.analysis import Settings, analyze_experiment
    from productlens.experiments.data import DIMENSIONS
    from productlens.experiments.inference import Method

    how = next((m for m in Method if m.value == method), None)
    if how is None:
        _fail(f"--method {method!r}: expected frequentist, bayesian or sequential")
    if not 0 < alpha < 1:
        _fail(f"--alpha {alpha}: expected a number between 0 and 1")
    if by is not None and by not in DIMENSIONS:
        _fail(f"--by {by!r}: expected one of {', '.join(DIMENSIONS)}")
    project = project_of(ctx)
    defined = project.config.experiment_metrics()
    known = {m.name: m for m in defined}
    for m in metric or ():
        if m not in known:
            names = ", ".join(known)
            _fail(f"--metric {m!r}: not a metric of [experiments.metrics]; known: {names}")
    chosen = [known[m] for m in metric] if metric else list(defined)
    settings = Settings(
        method=how,
        alpha=alpha,
        cuped=cuped,
        by=by,
        top_n=project.config.experiments.top_n,
    )
    with warehouse(project) as engine:
        readout = analyze_experiment(engine, name, chosen, settings)
    emit(readout.to_dict(), as_json, _render_readout)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f}%"


def _ci(pair: list[float] | None) -> str:
    return "-" if pair is None or None in pair else f"{_pct(pair[0])} .. {_pct(pair[1])}"


def _render_readout(data: dict[str, Any]) -> None:
    e, g = data["experiment"], data["guards"]
    console.print(
        f"[bold]{e['experiment_id']}[/] {e['name'] or ''}: "
        f"{sum(v['n_users'] for v in e['variants']):,} users over {g['exposure_days']} days, "
        f"{data['settings']['method']}, alpha {data['settings']['alpha']}"
        + (", CUPED" if data["settings"]["cuped"] else "")
    )
    srm = g["srm"]
    status = "[red]MISMATCH[/]" if srm["mismatch"] else "ok"
    console.print(
        f"SRM: {status} (p = {srm['p_value']:.3g}); users: "
        + ", ".join(f"{k} {v:,}" for k, v in g["users_per_variant"].items())
        + f"; in more than one variant: {g['n_multiple_variants']:,}"
    )
    _render_metrics("Metrics", data["metrics"])
    family = data["multiple_comparisons"]
    if len(family) > 1:
        adjusted = [
            (f["metric"], f["variant"], f["p_value"], f["p_value_holm"], f["p_value_bh"])
            for f in family
        ]
        console.print(
            table(
                f"p-values adjusted across {len(family)} comparisons",
                ["metric", "variant", "p", "Holm", "Benjamini-Hochberg"],
                adjusted,
            )
        )
    if data["breakdown"]:
        _render_metrics(f"By {data['settings']['by']}", data["breakdown"])
    impacts = [
        (m["metric"], c["variant"], c["impact"])
        for m in data["metrics"]
        for c in m["comparisons"]
        if c.get("impact")
    ]
    if impacts:
        rows = [
            (metric, variant, i["monthly_users"], i["incremental"], i["lower"], i["upper"])
            for metric, variant, i in impacts
        ]
        console.print(
            table(
                "Monthly impact at 100% rollout",
                ["metric", "variant", "users/month", "incremental", "low", "high"],
                rows,
            )
        )
    reg = data["regression"]
    if reg is not None:
        if reg["error"]:
            console.print(f"Logistic regression: not fitted ({reg['error']})")
        else:
            rows = [
                tuple(
                    c[k]
                    for k in ("name", "odds_ratio", "odds_ratio_low", "odds_ratio_high", "p_value")
                )
                for c in reg["coefficients"]
            ]
            console.print(
                table(
                    f"Logistic regression of conversion (n = {reg['n']:,})",
                    ["term", "odds ratio", "low", "high", "p"],
                    rows,
                )
            )
    d = data["decision"]
    console.print(f"[bold]Decision: {d['verdict']}[/]")
    for reason in d["reasons"]:
        console.print(f"  - {reason}")
    for note in d["notes"]:
        console.print(f"  note: {note}")


def _render_metrics(title: str, metrics: list[dict[str, Any]]) -> None:
    rows = []
    for m in metrics:
        label = m["metric"] + (f" [{m['dimension_value']}]" if "dimension_value" in m else "")
        for c in m["comparisons"]:
            est, inf = c["estimate"], c["inference"]
            verdict = (
                (est["error"] or inf["error"])
                if (est["error"] or inf["error"])
                else ("significant" if inf["significant"] else "")
            )
            p = inf["p_value"] if inf["p_value"] is not None else inf["chance_to_win"]
            rows.append(
                (
                    label,
                    c["variant"],
                    est["control_mean"],
                    est["treatment_mean"],
                    _pct(est["relative"]),
                    _ci(inf["ci_relative"]),
                    p,
                    verdict,
                )
            )
    columns = ["metric", "variant", "control", "treatment", "lift", "interval", "p / win", ""]
    console.print(table(title, columns, rows))


@app.command(name="plan")
def plan_command(
    baseline: Annotated[
        float, typer.Option("--baseline", help="Control's rate (proportion) or mean.")
    ],
    mde: Annotated[
        float | None,
        typer.Option("--mde", help="Smallest effect to detect, relative (0.05 = 5%)."),
    ] = None,
    n_per_arm: Annotated[
        float | None,
        typer.Option("--n-per-arm", help="Instead of --mde: the effect detectable with N per arm."),
    ] = None,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="--mde is an absolute difference.")
    ] = False,
    alpha: Annotated[float, typer.Option("--alpha")] = 0.05,
    power: Annotated[float, typer.Option("--power")] = 0.8,
    stddev: Annotated[
        float | None,
        typer.Option("--stddev", help="Per-user standard deviation: plan a mean metric."),
    ] = None,
    daily_users: Annotated[
        float | None,
        typer.Option("--daily-users", help="Users entering the experiment per day (all arms)."),
    ] = None,
    arms: Annotated[int, typer.Option("--arms", help="Number of variants, control included.")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Users per arm (and days at --daily-users) to detect --mde with --power; or, with
    --n-per-arm, the smallest effect that many users per arm detect."""
    from productlens.experiments.power import mde_for_sample, sample_size

    if (mde is None) == (n_per_arm is None):
        _fail("give exactly one of --mde (plan a sample size) or --n-per-arm (find the MDE)")

    if arms < 2:
        _fail(f"--arms {arms}: an experiment needs at least 2 variants")
    if stddev is not None and stddev <= 0:
        _fail(f"--stddev {stddev}: expected a positive number")
    if daily_users is not None and daily_users <= 0:
        _fail(f"--daily-users {daily_users}: expected a positive number")
    try:
        if n_per_arm is not None:
            plan = mde_for_sample(baseline, n_per_arm, alpha=alpha, power=power, stddev=stddev)
            emit(plan.to_dict(), as_json, _render_plan)
            return
        assert mde is not None
        plan = sample_size(
            baseline,
            mde,
            alpha=alpha,
            power=power,
            relative=not absolute,
            stddev=stddev,
            daily_users=daily_users,
            arms=arms,
        )
    except ValueError as exc:
        _fail(str(exc))
    emit(plan.to_dict(), as_json, _render_plan)


def _render_plan(data: dict[str, Any]) -> None:
    rows = [
        ("baseline", data["baseline"]),
        ("minimum detectable effect", f"{data['absolute_mde']:+.6g}"),
        ("relative to the baseline", _pct(data["relative_mde"])),
        ("alpha / power", f"{data['alpha']} / {data['power']}"),
        ("users per arm", data["n_per_arm"]),
    ]
    if data["days"] is not None:
        rows.append(("days at the daily traffic", data["days"]))
    console.print(table("Sample size", ["", "value"], rows))
