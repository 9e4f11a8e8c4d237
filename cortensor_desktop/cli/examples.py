"""One example (or a few) per command, shown at the end of its `--help`.

Kept in one table, not in each command module, so a test can prove every command has one.
"""

from __future__ import annotations

import argparse

from cortensor_desktop.cli.parser_tree import walk

EXAMPLES: dict[str, tuple[str, ...]] = {
    "config": ("cortensor-desktop config show",),
    "config path": ("cortensor-desktop config path",),
    "config show": ("cortensor-desktop config show --json | jq .fit",),
    "config init": ("cortensor-desktop config init",),
    "config set": ("cortensor-desktop config set fit.ctx 4096",),
    "profile": (
        "cortensor-desktop profile",
        "cortensor-desktop profile --json | jq .recommendation",
    ),
    "estimate": ("cortensor-desktop estimate model.gguf --ctx 4096 --gpu-layers 20",),
    "models": ("cortensor-desktop models list",),
    "models list": ("cortensor-desktop models list --json",),
    "models pull": ("cortensor-desktop models pull smollm2-135m-instruct",),
    "models verify": ("cortensor-desktop models verify",),
    "models rm": ("cortensor-desktop models rm smollm2-135m-instruct",),
    "generate": (
        'cortensor-desktop generate "What is the capital of France?"',
        "echo 'Name three rivers.' | cortensor-desktop generate -",
    ),
    "embed": ('cortensor-desktop embed "The capital of France is Paris."',),
    "bench": ("cortensor-desktop bench",),
    "run": (
        "cortensor-desktop run",
        "cortensor-desktop run --headless --miners 2 --duration 300",
        "cortensor-desktop run --network local --role miner --passphrase-file ~/.node-pass",
    ),
    "ask": (
        'cortensor-desktop ask "What is the capital of France?" --redundancy 3',
        "cat question.txt | cortensor-desktop ask - --json",
    ),
    "router": (
        "cortensor-desktop router",
        "cortensor-desktop router --network local --redundancy 3 --budget-eth 0.5",
        "cortensor-desktop router --host 0.0.0.0 --allow-remote --port 8787",
    ),
    "router keys": ("cortensor-desktop router keys list",),
    "router keys add": ("cortensor-desktop router keys add open-webui --cap-eth 0.05 --rpm 30",),
    "router keys list": ("cortensor-desktop router keys list --json",),
    "router keys revoke": ("cortensor-desktop router keys revoke 1a2b3c4d",),
    "wallet": ("cortensor-desktop wallet show",),
    "wallet new": ("cortensor-desktop wallet new",),
    "wallet import": ("cortensor-desktop wallet import",),
    "wallet show": ("cortensor-desktop wallet show --json",),
    "wallet export": ("cortensor-desktop wallet export --to backup.json",),
    "wallet passwd": ("cortensor-desktop wallet passwd",),
    "wallet withdraw": ("cortensor-desktop wallet withdraw",),
    "devnet": ("cortensor-desktop devnet up --miners 3 --oracles 1 --detach",),
    "devnet up": ("cortensor-desktop devnet up --miners 3 --oracles 1 --detach",),
    "devnet status": ("cortensor-desktop devnet status",),
    "devnet down": ("cortensor-desktop devnet down",),
    "devnet restart-chain": ("cortensor-desktop devnet restart-chain --down-for 20",),
    "status": ("cortensor-desktop status", "cortensor-desktop status --all /srv/nodes --json"),
    "attach": ("cortensor-desktop attach --home /var/lib/cortensor/node1",),
    "network": ("cortensor-desktop network list",),
    "network deploy": (
        "cortensor-desktop network deploy --rpc https://YOUR-ARBITRUM-SEPOLIA-RPC/KEY "
        "--chain-id 421614 --name my-testnet --out my-testnet.json",
    ),
    "network join": (
        "cortensor-desktop network join my-testnet.json --deployer 0xDEPLOYER...",
        "cortensor-desktop network join --from https://example.org/my-testnet.json "
        "--deployer 0xDEPLOYER...",
    ),
    "network list": ("cortensor-desktop network list --json",),
    "network show": ("cortensor-desktop network show my-testnet",),
    "network remove": ("cortensor-desktop network remove my-testnet",),
    "doctor": (
        "cortensor-desktop doctor",
        "cortensor-desktop doctor --quick --json | jq '.checks[] | select(.level != \"ok\")'",
        "cortensor-desktop doctor --bundle ~/cortensor-report.tar.gz",
    ),
    "completion": (
        "cortensor-desktop completion bash > ~/.local/share/bash-completion/completions/"
        "cortensor-desktop",
        "cortensor-desktop completion fish > ~/.config/fish/completions/cortensor-desktop.fish",
    ),
}


class ExamplesFormatter(argparse.HelpFormatter):
    """The default layout, except that an `examples:` epilog keeps its lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def attach_examples(root: argparse.ArgumentParser) -> None:
    """Give each command's parser its examples as the epilog of its `--help`."""
    for path, parser in walk(root):
        lines = EXAMPLES.get(" ".join(path))
        if not path or not lines:
            continue
        parser.formatter_class = ExamplesFormatter
        parser.epilog = "examples:\n" + "\n".join(f"  $ {line}" for line in lines)
