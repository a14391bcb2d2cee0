"""The one command: ``zsvc VERB ...`` (also ``python -m zsvc_pl VERB ...``).

Each verb is parsed by its own module, imported only when that verb is asked for: a library query or the web
page does not start Lightning, and ``zsvc --help`` starts nothing.
"""

from __future__ import annotations

import importlib
import sys

from zsvc_pl.library.cli import VERBS as LIBRARY

LIGHTNING = {"fit": "train the learnable parts (prompts, temporal, vision prompts) on base classes",
             "validate": "one pass over the validation split", "test": "evaluate: zero-shot with no checkpoint",
             "predict": "tag a folder of videos: predictions.csv, resumable"}
OWN = {"watch": ("zsvc_pl.watch", "labels and events over a live source (pipe, URL, camera)"),
       "serve": ("zsvc_pl.web.serve", "the library's web page: search, videos, tags, review")}


def overview() -> str:
    """What ``zsvc --help`` prints: every verb with one line."""
    rows = [("Classify, train and evaluate (LightningCLI: `zsvc fit --help` for every option)", LIGHTNING),
            ("A video library, filled once (`zsvc index --help`, ...)", LIBRARY),
            ("Live sources and the web page", {k: v for k, (_, v) in OWN.items()})]
    lines = ["usage: zsvc VERB [options]   (also: python -m zsvc_pl VERB [options])", ""]
    for title, verbs in rows:
        lines += [title + ":"] + [f"  {name:<10} {text}" for name, text in verbs.items()] + [""]
    return "\n".join(lines).rstrip()


def console() -> int:
    """The ``zsvc`` console script and ``python -m zsvc_pl``: the verb's exit status (0 after a successful run,
    2 after a mistake, with one line)."""
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(overview(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    verb = argv[0]
    if verb in OWN:
        return importlib.import_module(OWN[verb][0]).main(argv[1:])
    if verb in LIBRARY:
        from zsvc_pl.library.cli import main as library_main

        return library_main(argv)
    from zsvc_pl.cli import main

    main()
    return 0
