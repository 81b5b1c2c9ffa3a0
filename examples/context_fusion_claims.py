"""The reference example's reading of its rows: seed means, the paper's claims, the tables.

Kept apart from ``coco_context_fusion.py`` (the experiment) so that the claims it checks can be
read on one screen. Every number here comes from the rows of ``robustness_sweep``; a claim
is judged on the across-seed means and says how many seeds agree with it.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The threat models compared at the same eps, in the same pixel units: who moves what.
THREAT_MODELS = {
    "fg_fgsm": "foreground view (the paper)",
    "object_fgsm": "object's pixels in the raw image",
    "bg_fgsm": "background view",
    "image_fgsm": "whole raw image",
}
#: A "clear margin" between two across-seed means, in accuracy.
MARGIN = 0.05


def per_seed(rows: Iterable[Mapping[str, Any]], by_strength: Sequence[str] = ("fg_worst_case",)):
    """``{world: {perturbation: {model: {seed: mean accuracy over the sweep's strengths}}}}``.

    Perturbations named in ``by_strength`` are kept apart per strength, as
    ``"fg_worst_case@8/255"``: a worst case is read at each eps, not averaged over them.
    """
    acc: dict = {}
    for r in rows:
        if r.get("seed") == "mean":
            continue
        pert = r["perturbation"]
        if pert in by_strength:
            pert = f"{pert}@{round(r['strength'] * 255)}/255"
        cell = acc.setdefault(r["world"], {}).setdefault(pert, {})
        cell.setdefault(r["model"], {}).setdefault(r["seed"], []).append(r["accuracy"])
    return {
        w: {
            p: {m: {s: statistics.mean(v) for s, v in seeds.items()} for m, seeds in ms.items()}
            for p, ms in ps.items()
        }
        for w, ps in acc.items()
    }


def seed_summary(seeds: Mapping) -> dict:
    """Across-seed means of :func:`per_seed`'s values (what the claims are judged on)."""
    return {
        w: {
            p: {m: statistics.mean(v.values()) for m, v in sorted(ms.items())}
            for p, ms in sorted(ps.items())
        }
        for w, ps in sorted(seeds.items())
    }


def _agree(seeds: Mapping, world: str, pert: str, better: str, worse: str, margin: float) -> str:
    a, b = seeds[world][pert][better], seeds[world][pert][worse]
    common = sorted(set(a) & set(b))
    return f"{sum(a[s] > b[s] + margin for s in common)}/{len(common)}"


def claims(seeds: Mapping) -> list[dict[str, Any]]:
    """The paper's qualitative claims, each judged on the seed means.

    Returns:
        One dict per claim: ``claim``, ``value`` (what was measured), ``holds`` (bool) and
        ``seeds`` (how many seeds agree, ``"k/n"``).
    """
    mean = seed_summary(seeds)
    out: list[dict[str, Any]] = []

    def gain(world: str, pert: str, better: str = "joint", worse: str = "fg_only") -> float:
        return mean[world][pert][better] - mean[world][pert][worse]

    d = mean.get("distinct", {})
    if d:
        fg = d["clean"]["fg_only"]
        fg_seeds = seeds["distinct"]["clean"]["fg_only"].values()
        out.append(
            {
                "claim": "clean foreground-only accuracy is informative (0.85-0.95, not saturated)",
                "value": f"{fg:.3f}",
                "holds": 0.85 <= fg <= 0.95,
                "seeds": f"{sum(0.85 <= v <= 0.95 for v in fg_seeds)}/{len(fg_seeds)}",
            }
        )
        for pert, what in (("fg_blur", "foreground blur"), ("fg_fgsm", "foreground FGSM")):
            g = gain("distinct", pert)
            out.append(
                {
                    "claim": f"distinct contexts: joint beats fg-only under {what} by >= "
                    f"{MARGIN:.2f}",
                    "value": f"{d[pert]['joint']:.3f} vs {d[pert]['fg_only']:.3f} ({g:+.3f})",
                    "holds": g >= MARGIN,
                    "seeds": _agree(seeds, "distinct", pert, "joint", "fg_only", MARGIN),
                }
            )
        # The worst case runs on a subsample: its rows are a world of their own.
        for sub in (w for w in mean if w.startswith("distinct, first")):
            for pert in (p for p in mean[sub] if p.startswith("fg_worst_case@")):
                g = gain(sub, pert)
                wc = mean[sub][pert]
                out.append(
                    {
                        "claim": "distinct contexts: joint beats fg-only under the foreground "
                        f"worst case at eps {pert.split('@')[1]} (PGD, APGD-CE, APGD-T, Square; "
                        f"{sub.split(', ')[1]}) by >= {MARGIN:.2f}",
                        "value": f"{wc['joint']:.3f} vs {wc['fg_only']:.3f} ({g:+.3f})",
                        "holds": g >= MARGIN,
                        "seeds": _agree(seeds, sub, pert, "joint", "fg_only", MARGIN),
                    }
                )
        clean_gap = d["clean"]["joint"] - d["clean"]["fg_only"]
        out.append(
            {
                "claim": "fusion keeps clean accuracy (joint >= fg-only - 0.02)",
                "value": f"{d['clean']['joint']:.3f} vs {fg:.3f} ({clean_gap:+.3f})",
                "holds": clean_gap >= -0.02,
                "seeds": _agree(seeds, "distinct", "clean", "joint", "fg_only", -0.02),
            }
        )
        if "joint_fg_penalty" in d["fg_fgsm"]:
            g = gain("distinct", "fg_fgsm", "joint_fg_penalty", "joint")
            cost = d["clean"]["joint"] - d["clean"]["joint_fg_penalty"]
            per = {p: seeds["distinct"][p] for p in ("clean", "fg_fgsm")}
            common = sorted(set(per["clean"]["joint"]) & set(per["clean"]["joint_fg_penalty"]))
            agree = sum(
                per["fg_fgsm"]["joint_fg_penalty"][k] - per["fg_fgsm"]["joint"][k] >= 0.02
                and per["clean"]["joint"][k] - per["clean"]["joint_fg_penalty"][k] <= 0.03
                for k in common
            )
            out.append(
                {
                    "claim": "the fg weight penalty buys robustness to fg FGSM (>= 0.02) "
                    "for little clean accuracy (<= 0.03)",
                    "value": f"FGSM {g:+.3f}, clean cost {cost:.3f}",
                    "holds": g >= 0.02 and cost <= 0.03,
                    "seeds": f"{agree}/{len(common)}",
                }
            )
    s = mean.get("similar", {})
    if d and s:
        for pert in ("fg_blur", "fg_fgsm"):
            gd, gs = gain("distinct", pert), gain("similar", pert)
            out.append(
                {
                    "claim": f"the context helps only where it is informative: {pert} gain "
                    f"distinct > similar + {MARGIN:.2f}",
                    "value": f"{gd:+.3f} vs {gs:+.3f}",
                    "holds": gd > gs + MARGIN,
                    "seeds": "-",
                }
            )
        bg = s["clean"]["bg_only"]
        out.append(
            {
                "claim": "similar contexts: the background alone is near chance "
                "(< 0.35; 6 classes)",
                "value": f"{bg:.3f} (distinct world: {d['clean']['bg_only']:.3f})",
                "holds": bg < 0.35,
                "seeds": f"{sum(v < 0.35 for v in seeds['similar']['clean']['bg_only'].values())}"
                f"/{len(seeds['similar']['clean']['bg_only'])}",
            }
        )
    return out


def claims_table(found: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: every claim, what was measured, whether it holds, how many seeds agree."""
    lines = ["| claim | measured (seed means) | holds | seeds agreeing |", "|---|---|---|---|"]
    for c in found:
        verdict = "yes" if c["holds"] else "**NO**"
        lines.append(f"| {c['claim']} | {c['value']} | {verdict} | {c['seeds']} |")
    if not found:  # nothing was judged: never "every claim holds" over an empty table
        return (
            "No claim could be judged on this run: the worlds and perturbations the claims "
            "compare (distinct and similar synthetic worlds, foreground blur, FGSM and the "
            "worst case) did not run."
        )
    failed = [c for c in found if not c["holds"]]
    lines += [
        "",
        f"**{len(failed)} of {len(found)} claim(s) do not hold on this run.**"
        if failed
        else f"All {len(found)} claims hold on the seed means.",
    ]
    return "\n".join(lines)


def _cell(rows: Sequence[Mapping[str, Any]], **match: Any) -> str:
    hit = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if not hit:
        return "-"
    r = hit[0]
    std = r.get("accuracy_std")
    return f"{r['accuracy']:.3f}" + (
        f" ± {std:.3f}" if std is not None and r.get("seeds", 1) > 1 else ""
    )


def threat_model_table(
    rows: Sequence[Mapping[str, Any]], world: str, eps: float, models: Sequence[str], seed: int
) -> str:
    """Markdown: one row per model, one column per threat model, at one eps, for one seed."""
    near = [r for r in rows if r["world"] == world and r["seed"] == seed]
    present = [p for p in THREAT_MODELS if any(r["perturbation"] == p for r in near)]
    head = " | ".join(THREAT_MODELS[p] for p in present)
    lines = [f"| model | clean | {head} |", "|---|---|" + "---|" * len(present)]
    for m in models:
        cells = [_cell(near, model=m, perturbation="clean")]
        for p in present:
            at_eps = [r for r in near if abs(r["strength"] - eps) < 1e-9]
            cells.append(_cell(at_eps, model=m, perturbation=p))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tradeoff_plot(
    path: Path, means: Sequence[Mapping[str, Any]], world: str, alphas: Mapping[str, float]
) -> None:
    """Clean accuracy vs mean fg-FGSM accuracy of the joint model at each penalty alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = []
    for model, alpha in alphas.items():
        sel = [
            r for r in means if r["world"] == world and r["model"] == model and r["seed"] == "mean"
        ]
        clean = [r for r in sel if r["perturbation"] == "clean"]
        attacked = [r["accuracy"] for r in sel if r["perturbation"] == "fg_fgsm"]
        if clean and attacked:
            pts.append(
                (
                    alpha,
                    clean[0]["accuracy"],
                    statistics.mean(attacked),
                    clean[0].get("accuracy_std", 0.0),
                )
            )
    pts.sort()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.plot([p[2] for p in pts], [p[1] for p in pts], marker="o", color="tab:purple")
    ax.errorbar(
        [p[2] for p in pts],
        [p[1] for p in pts],
        yerr=[p[3] for p in pts],
        fmt="none",
        ecolor="tab:purple",
        alpha=0.5,
    )
    for a, c, f, _ in pts:
        ax.annotate(f"alpha={a:g}", (f, c), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("accuracy under fg FGSM (mean over eps)")
    ax.set_ylabel("clean accuracy")
    ax.set_title(f"ModalityWeightPenalty('fg') trade-off ({world})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path.write_bytes(buf.getvalue())


def merge_checks(runs: Sequence[Sequence[Mapping[str, str]]]) -> list[dict[str, str]]:
    """One status per check over several sweeps: flagged if any flagged, passed if any ran."""
    order = {"flagged": 2, "passed": 1, "not run": 0}
    merged: dict[str, dict[str, str]] = {}
    for checks in runs:
        for c in checks:
            seen = merged.get(c["check"])
            if seen is None or order[c["status"]] > order[seen["status"]]:
                merged[c["check"]] = dict(c)
    return list(merged.values())
