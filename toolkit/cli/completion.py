"""``ctk completion bash|zsh|fish``: the shell script that completes ctk's commands."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash: eval "$(ctk completion bash)"    (in ~/.bashrc)
    zsh:  eval "$(ctk completion zsh)"     (in ~/.zshrc)
    fish: ctk completion fish > ~/.config/fish/completions/ctk.fish
    """
    root = click.get_current_context().find_root().command
    complete_class = get_completion_class(shell)
    assert complete_class is not None  # every name in SHELLS is one click knows
    script = complete_class(root, {}, "ctk", "_CTK_COMPLETE").source()
    click.echo(script)
