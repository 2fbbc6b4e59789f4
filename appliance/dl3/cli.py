"""``appliance dl3 ...``: IACT DL2 events and Monte Carlo to GADF DL3 that gammapy opens."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.exitcodes import Exit

FLOW = """\
Typical flow:
  appliance dl3 generate --out synth/                     # synthetic Crab, hadrons, MC (FITS + HDF5)
  appliance dl3 convert --events synth/fits/dl2_obs*.fits --mc synth/fits/mc_gamma.fits --out dl3/
  appliance dl3 convert --full-enclosure --events synth/hdf5/dl2_obs*.h5 --mc synth/hdf5/mc_gamma.h5 \\
                        --background-mc synth/hdf5/mc_proton.h5 --out dl3-fe/
  appliance dl3 check dl3/                                # GADF conformance; exit 6 if not
Input columns and units: docs/DL3.md.
"""


def _emit(args: argparse.Namespace, result) -> int:
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(result.report())
    return 0 if result.ok else Exit.NOT_REPRODUCED


def _generate(args: argparse.Namespace) -> int:
    from appliance.dl3.generate import GenerateOptions, generate

    truth = generate(GenerateOptions(out=Path(args.out), seed=args.seed, n_obs=args.n_obs, obs_time=args.obs_time,
                                     gamma_showers=args.gamma_showers, proton_showers=args.proton_showers))
    if args.json:
        print(json.dumps(truth, indent=2))
    else:
        print(f"{args.out}: {len(truth['obs_ids'])} observations, {truth['n_source_events']} source gammas "
              f"injected; truth in {Path(args.out) / 'truth.json'}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from appliance.dl3.gadf import ConvertOptions, convert
    from appliance.dl3.irf import Cuts

    given = {k: v for k, v in (("gammaness", args.gammaness_cut), ("theta", args.theta_cut),
                               ("gh_efficiency", args.gammaness_efficiency),
                               ("theta_containment", args.theta_containment)) if v is not None}
    opts = ConvertOptions(events=tuple(Path(p) for p in args.events), mc=Path(args.mc), out=Path(args.out),
                          point_like=not args.full_enclosure,
                          background_mc=Path(args.background_mc) if args.background_mc else None,
                          cuts=Cuts(**given), force=args.force,
                          background=args.background)
    return _emit(args, convert(opts))


def _check(args: argparse.Namespace) -> int:
    from appliance.dl3.check import check

    if not Path(args.dir).is_dir():
        raise FileNotFoundError(2, "No such directory", args.dir)
    return _emit(args, check(Path(args.dir)))


def _fraction(text: str) -> float:
    try:
        f = float(text)
    except ValueError:
        f = float("nan")
    if not 0.0 < f <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return f


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dl3", help="IACT DL2 + MC -> GADF DL3 (events, IRFs, indexes) for gammapy",
                       description=__doc__, epilog=FLOW)
    s = p.add_subparsers(dest="dl3_command", metavar="STEP")
    s.required = True

    g = s.add_parser("generate", help="synthetic Crab-like data with a known response",
                     description="Writes DIR/fits/ and DIR/hdf5/ (the same tables twice) and DIR/truth.json.")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--n-obs", type=int, default=4, help="wobble observations (default 4)")
    g.add_argument("--obs-time", type=float, default=600.0, help="seconds per observation (default 600)")
    g.add_argument("--gamma-showers", type=int, default=4_000_000, help="thrown MC gammas (default 4e6)")
    g.add_argument("--proton-showers", type=int, default=4_000_000, help="thrown MC protons (default 4e6)")
    g.add_argument("--json", action="store_true", help="print the injected truth as JSON")
    g.set_defaults(func=_generate)

    c = s.add_parser("convert", help="events + MC -> one GADF file per observation, obs-index, hdu-index",
                     description="Reads FITS (.fits) or HDF5 (.h5) DL2 tables; writes atomically (a temporary "
                                 "directory renamed at the end).")
    c.add_argument("--events", nargs="+", required=True, help="DL2 event files (one or more observations each)")
    c.add_argument("--mc", required=True, help="reconstructed MC gammas with the simulation table")
    c.add_argument("--background-mc", help="reconstructed MC protons: adds BKG_2D or BKG_3D (full-enclosure)")
    c.add_argument("--background", choices=("2d", "3d"), default="2d",
                   help="background IRF from --background-mc: 2d = BKG_2D (reco energy x offset, default), "
                        "3d = BKG_3D (reco energy x FoV lon x lat, FOVALIGN=ALTAZ)")
    c.add_argument("--out", required=True, help="output DL3 directory (must not exist unless --force)")
    kind = c.add_mutually_exclusive_group()
    kind.add_argument("--point-like", action="store_true", help="theta-cut IRFs + RAD_MAX_2D (default)")
    kind.add_argument("--full-enclosure", action="store_true", help="IRFs without theta cut + PSF_TABLE")
    gh = c.add_mutually_exclusive_group()
    gh.add_argument("--gammaness-cut", type=float, help="global cut: keep gammaness > CUT (default 0.6)")
    gh.add_argument("--gammaness-efficiency", type=_fraction, metavar="F",
                    help="energy-dependent cut: keep the fraction F of the MC gammas in each reco-energy bin")
    th = c.add_mutually_exclusive_group()
    th.add_argument("--theta-cut", type=float, help="global point-like direction cut, deg (default 0.2)")
    th.add_argument("--theta-containment", type=_fraction, metavar="F",
                    help="energy-dependent point-like direction cut: the theta containing the fraction F of the "
                         "selected MC gammas in each reco-energy bin (RAD_MAX_2D)")
    c.add_argument("--force", action="store_true", help="replace an existing output directory atomically")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_convert)

    k = s.add_parser("check", help="GADF conformance of a DL3 directory (exit 6 if not)")
    k.add_argument("dir")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=_check)
