"""Secrets in ``--model_args`` (``api_key=sk-...``) kept out of every file a run writes.

lmms-eval 0.7.3 copies ``--model_args`` verbatim into the results JSON (``config.model_args``), the
answer cache's model fingerprint (``cache.db``), its console summary line and the run name of its
loggers. ``reguide-eval`` takes each secret ``k=v`` out of the arguments before lmms-eval parses
them (:func:`split_secret_model_args`) and hands it to the model alone, when lmms-eval builds it
(:func:`reguide_tasks.lmms.runtime.install_model_arg_secrets`). So a rotated key also keeps the
answer cache. Keys in the environment (``OPENAI_API_KEY``) are never written by lmms-eval or us.
docs/security.md; tests/test_hostile_served.py greps every written file for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# An argument name that holds a secret: ends in key / token / secret / password / credential(s)
# (api_key, hf_token, access_key, ...), not max_new_tokens or key_reading.
SECRET_ARG = re.compile(r"(?:^|_)(?:api_?key|key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)
_FLAG = "--model_args"


def split_model_args(model_args: str) -> tuple[str, dict[str, str]]:
    """``model_args`` without its secret ``k=v`` parts, and those parts (name -> value)."""
    kept, secrets = [], {}
    for part in model_args.split(","):
        name, sep, value = part.partition("=")
        if sep and SECRET_ARG.search(name.strip()):
            secrets[name.strip()] = value
        else:
            kept.append(part)
    return ",".join(kept), secrets


def is_model_args_flag(flag: str) -> bool:
    """``--model_args`` or an abbreviation argparse accepts for it (lmms-eval's parser allows them:
    ``--model_arg``, ``--model_a``; ``--model`` itself is the model's name)."""
    return len("--model") < len(flag) <= len(_FLAG) and _FLAG.startswith(flag)


def split_secret_model_args(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` with the secrets taken out of every ``--model_args`` value (however abbreviated;
    written out in full), and the secrets."""
    out, secrets = [], {}
    args = list(argv)
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if is_model_args_flag(flag) and (eq or i + 1 < len(args)):
            kept, found = split_model_args(value if eq else args[i + 1])
            out += [f"{_FLAG}={kept}"] if eq else [_FLAG, kept]
            secrets.update(found)
            i += 1 if eq else 2
            continue
        out.append(args[i])
        i += 1
    return out, secrets


def with_secrets(model_args: str, secrets: dict[str, str]) -> str:
    """``model_args`` with ``secrets`` appended again (what the model's constructor is given)."""
    return ",".join(filter(None, [model_args, *(f"{k}={v}" for k, v in secrets.items())]))
