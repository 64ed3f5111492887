"""One source of truth for options: the configs, docs/options.md and the checks' rules agree.

- every option a config of ours sets is documented in docs/options.md (by its full name, or,
  for a strategy, by its name in the strategy options' table), except those that only pass
  on another option's value (``${...}``) and the arguments of third-party classes (Lightning's
  Trainer and loggers, documented by Lightning);
- every option docs/options.md documents by its full name is in a config;
- every option a rule checks (loop/checks.py, the models' ``option_rules``) is in a config.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from regal_torch.loop.checks import OWN_RULES, RULES, model_rules
from regal_torch.overrides import CONFIG_DIR

CONFIGS = Path(CONFIG_DIR)
DOCS = re.sub(r"```.*?```", "", (CONFIGS.parent / "docs" / "options.md").read_text(), flags=re.S)
# What docs/options.md names in backticks, without a value (`data.path=FILE` -> data.path).
DOCUMENTED = {quoted.split("=")[0].strip() for quoted in re.findall(r"`([^`\n]+)`", DOCS)}
STRATEGY_TABLE = DOCS[DOCS.index("## `strategy=`") :].split("\n## ")[0]
STRATEGY_OPTIONS = set(re.findall(r"^\| `([a-z_]+)` \|", STRATEGY_TABLE, re.M))
# The groups whose option names are the group's own (strategy options are shown without it).
_BARE = ("strategy", "loop.initial_strategy")


# Third parties' arguments (Lightning's Trainer and loggers), documented by Lightning.
_THEIRS = ("trainer", "logger")


def _options(node, prefix: str, skip: tuple[str, ...] = ("dataset",)):
    """``(dotted name, value)`` of every leaf option under ``node`` (not Hydra's keys; not the
    ``skip`` nodes, by default the dataset's constructor arguments, which repeat ``data.*``)."""
    if not isinstance(node, dict):
        yield prefix[:-1], node
        return
    for key, value in node.items():
        if key not in ("defaults", "hydra", "_target_", "_partial_", *skip):
            yield from _options(value, f"{prefix}{key}.", skip)


def _config_options() -> dict[str, list[str]]:
    """Per config file of ours (not experiments, not Hydra's), its options by full name."""
    found = {}
    for path in sorted(CONFIGS.rglob("*.yaml")):
        rel = path.relative_to(CONFIGS)
        if rel.parts[0] in ("experiment", "hydra", *_THEIRS):
            continue
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        group = ".".join(rel.parts[:-1])
        names = [
            name
            for name, value in _options(node, f"{group}." if group else "")
            if not (isinstance(value, str) and value.startswith("${"))
        ]
        found[str(rel)] = names
    return found


def _is_documented(name: str) -> bool:
    if name in DOCUMENTED:
        return True
    group = next((g for g in _BARE if name.startswith(f"{g}.")), None)
    return group is not None and name.removeprefix(f"{group}.") in STRATEGY_OPTIONS


def test_every_option_of_the_configs_is_documented():
    missing = {
        file: [name for name in names if not _is_documented(name)]
        for file, names in _config_options().items()
    }
    missing = {file: names for file, names in missing.items() if names}
    assert not missing, f"options not in docs/options.md: {missing}"


def _all_names() -> set[str]:
    """Every option any config of ours sets, plumbing and third parties' included."""
    names = set()
    for path in CONFIGS.rglob("*.yaml"):
        rel = path.relative_to(CONFIGS)
        if rel.parts[0] not in ("experiment", "hydra"):
            node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            names |= {n for n, _ in _options(node, ".".join([*rel.parts[:-1], ""]), skip=())}
    return names


def test_every_option_the_docs_name_is_in_a_config():
    names = _all_names()
    prefixes = ("data.", "loop.", "model.", "predict.", "engine.", "oracle.", "strategy.")
    rows = set(re.findall(r"^\| `([a-z_]+\.[a-z_.]+)`", DOCS, re.M))
    unknown = sorted(
        row
        for row in rows
        if row.startswith(prefixes)
        and row not in names
        and not any(n.endswith("." + row.split(".", 1)[1]) for n in names)
    )
    assert not unknown, f"docs/options.md documents options no config has: {unknown}"


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml")))
def test_every_rule_checks_an_option_that_exists(model):
    cfg = compose_config([f"model={model}"])
    names = _all_names()
    for key in [*RULES, *OWN_RULES]:
        assert key in names, f"loop/checks.py has a rule for {key}, which no config has"
    for key in model_rules(cfg):
        assert f"model.{key}" in names, f"model={model} has a rule for {key} but no such option"
