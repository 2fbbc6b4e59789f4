"""The dl3-crab recipe: synthetic Crab -> GADF DL3 (appliance.dl3) -> gammapy 1-D spectral fit.

Runs in the ``dl3`` image (gammapy, pyirf and their wheel closure on the locked base). The converter
is not in the image: its source files are the recipe's locked inputs (``/input/appliance.dl3.irf.py``
and so on, each by sha256 in recipe.lock), put back together as the ``appliance`` package under /tmp
before anything is imported. So a run names the exact converter it ran, and a changed converter is
a changed input (``appliance run`` refuses a stale lock; ``appliance lock`` records the new bytes).

Steps: ``generate`` (seeded: Crab log-parabola, hadrons, wobble pointings, MC with a known response),
``convert`` (point-like: EVENTS, GTI, POINTING, AEFF_2D, EDISP_2D, RAD_MAX_2D, obs/hdu index),
``check`` (GADF conformance, exit 6 if not), then the fit: reflected wobble regions, WStat forward
folding, log-parabola free. Outputs: ``dl3/`` (the DL3 directory, compared as FITS), ``fit.json``
(fitted values, errors, truth and pulls; floats rounded to 6 significant digits so a replay compares
by bytes) and ``summary.txt``.

Exit codes: 0 the fit converged and recovered the injected spectrum within 3 sigma per parameter;
6 it did not (or the check failed); 2 bad arguments or inputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SRC = Path("/tmp/src")


def assemble_package(input_dir: Path, dest: Path = SRC) -> list[str]:
    """Put ``appliance.X.Y.py`` inputs back as ``appliance/X/Y.py`` under ``dest``; returns the modules."""
    modules = []
    for f in sorted(input_dir.glob("appliance.*py")):
        parts = f.name[: -len(".py")].split(".")
        if parts[-1] == "__init__":
            target = dest.joinpath(*parts[:-1], "__init__.py")
        else:
            target = dest.joinpath(*parts[:-1], parts[-1] + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        modules.append(".".join(p for p in parts if p != "__init__"))
    for d in [dest / "appliance", *(p for p in (dest / "appliance").rglob("*") if p.is_dir())]:
        if not (d / "__init__.py").exists():
            sys.exit(f"crab.py: input for package {d.relative_to(dest)} missing (expected an input named "
                     f"{'.'.join(d.relative_to(dest).parts)}.__init__.py)")
    return modules


def sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def fit(dl3_dir: Path, truth: dict) -> dict:
    """The proof's spectral fit (appliance.dl3.fit), as fit.json holds it."""
    from appliance.dl3.fit import fit_log_parabola

    src = truth["source"]
    res = fit_log_parabola(dl3_dir, src["ra"], src["dec"])
    out: dict = {"success": res.success, "observations": res.observations, "excess": sig(res.excess),
                 "parameters": {}}
    for p, (value, error, unit) in res.parameters.items():
        out["parameters"][p] = {"value": sig(value), "error": sig(error), "truth": src[p],
                                "pull": sig(res.pull(p, src[p]), 3), "unit": unit}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=Path, default=Path("/input"), help="where the converter's sources are")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n-obs", type=int, required=True)
    ap.add_argument("--obs-time", type=float, required=True)
    ap.add_argument("--gamma-showers", type=int, required=True)
    ap.add_argument("--proton-showers", type=int, required=True)
    a = ap.parse_args()

    modules = assemble_package(a.inputs)
    sys.path.insert(0, str(SRC))
    from appliance.dl3.check import check
    from appliance.dl3.gadf import ConvertOptions, convert
    from appliance.dl3.generate import GenerateOptions, generate

    synth = Path("/tmp/synth")
    truth = generate(GenerateOptions(out=synth, seed=a.seed, n_obs=a.n_obs, obs_time=a.obs_time,
                                     gamma_showers=a.gamma_showers, proton_showers=a.proton_showers))
    fits_dir = synth / "fits"
    dl3 = a.out / "dl3"
    conv = convert(ConvertOptions(events=tuple(fits_dir / f"dl2_obs{i}.fits" for i in truth["obs_ids"]),
                                  mc=fits_dir / "mc_gamma.fits", out=dl3, point_like=True))
    print(conv.report())
    conformance = check(dl3)
    print(conformance.report())
    if not (conv.ok and conformance.ok):
        return 6
    result = fit(dl3, truth)
    result["converter_modules"] = modules
    (a.out / "fit.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    pulls = {p: v["pull"] for p, v in result["parameters"].items()}
    within = result["success"] and all(abs(v) < 3 for v in pulls.values())
    lines = [f"observations {result['observations']}, excess {result['excess']:.0f} counts"]
    lines += [f"{p:9s} {v['value']:.4g} +- {v['error']:.2g} (injected {v['truth']:.4g}, pull {v['pull']:+.2f})"
              for p, v in result["parameters"].items()]
    lines.append("recovered within 3 sigma" if within else "NOT recovered within 3 sigma")
    (a.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if within else 6


if __name__ == "__main__":
    sys.exit(main())
