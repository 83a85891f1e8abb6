"""Image commands: ``ctk image ls|build|load|save|tag|rm|history|inspect|prune|pull|push``,
and the docker habits ``ctk images``, ``ctk build``, ``ctk tag``, ``ctk rmi``, ``ctk pull``
and ``ctk push``."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from toolkit.backends.base import Images
from toolkit.cli._common import (
    confirm_prune,
    human_bytes,
    inspect_each,
    json_option,
    parse_labels,
    print_json,
    print_removed,
    print_table,
    remove_each,
    state,
    wants_json,
    with_progress,
)
from toolkit.errors import InvalidArgument, Unsupported
from toolkit.models import ImageInfo

_CHUNK = 1024 * 1024


def _images() -> Images:
    backend = state().backend()
    if not isinstance(backend, Images):
        raise Unsupported(f"{backend.kind} has no image commands in ctk")
    return backend


def _render_list(items: list[ImageInfo], quiet: bool) -> None:
    if wants_json():
        print_json([i.to_dict() for i in items])
        return
    if quiet:
        for item in items:
            click.echo(item.short_id)
        return
    rows = []
    for item in items:
        for tag in item.tags or ("<none>:<none>",):
            repo, _, version = tag.rpartition(":")
            rows.append([repo, version, item.short_id, item.created[:19], human_bytes(item.size)])
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)


@click.group()
def image() -> None:
    """Manage images: each a stack of read-only layers (build, history, save, load, ...)."""


@image.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print image IDs.")
@click.option("-l", "--label", multiple=True, help="Only images with label KEY=VALUE.")
@json_option
def ls(quiet: bool, label: tuple[str, ...]) -> None:
    """List local images, newest first."""
    _render_list(_images().images(labels=parse_labels(label) or None), quiet)


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only print image IDs.")
@click.option("-l", "--label", multiple=True, help="Only images with label KEY=VALUE.")
@json_option
def images(quiet: bool, label: tuple[str, ...]) -> None:
    """List local images (ctk image ls)."""
    _render_list(_images().images(labels=parse_labels(label) or None), quiet)


def _build_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            click.argument(
                "context", type=click.Path(exists=True, file_okay=False, path_type=Path)
            ),
            click.option(
                "-f",
                "--file",
                "dockerfile",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The Dockerfile/Containerfile (default: CONTEXT/Dockerfile).",
            ),
            click.option("-t", "--tag", multiple=True, help="Name the image NAME[:TAG]."),
            click.option("-l", "--label", multiple=True, help="Set a label KEY=VALUE."),
            click.option("--build-arg", multiple=True, help="Set a build argument KEY=VALUE."),
            click.option("-q", "--quiet", is_flag=True, help="Print only the image ID."),
            json_option,
        )
    ):
        func = option(func)
    return func


def _build(
    context: Path,
    dockerfile: Path | None,
    tag: tuple[str, ...],
    label: tuple[str, ...],
    build_arg: tuple[str, ...],
    quiet: bool,
) -> None:
    result = _images().build_image(
        context,
        dockerfile=dockerfile,
        tags=tag,
        labels=parse_labels(label) or None,
        build_args=parse_labels(build_arg, option="--build-arg") or None,
    )
    if wants_json():
        print_json(result.to_dict())
        return
    if not quiet:
        for line in result.log:
            click.echo(line, err=True)
    click.echo(result.id)


@image.command("build")
@_build_options
def build_image(**options: Any) -> None:
    """Build an image from a Dockerfile and the CONTEXT directory, with no registry: FROM
    names a local image or scratch. Prints the image ID."""
    _build(**options)


@click.command("build")
@_build_options
def build(**options: Any) -> None:
    """Build an image from a Dockerfile and CONTEXT (ctk image build)."""
    _build(**options)


@image.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect_image(names: tuple[str, ...]) -> None:
    """Details of images as a JSON array, with their layer stacks (``layers``, base first)."""
    backend = _images()
    inspect_each(names, lambda name: backend.inspect_image(name).to_dict())


@image.command("history")
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Print the whole instructions and IDs.")
@json_option
def history(name: str, no_trunc: bool) -> None:
    """The layers of image NAME, newest first: the step that made each and its size."""
    layers = _images().image_history(name)
    if wants_json():
        print_json([layer.to_dict() for layer in layers])
        return
    rows = []
    for layer in layers:
        short = layer.id.removeprefix("sha256:")
        created_by = " ".join(layer.created_by.split())
        if not no_trunc:
            short, created_by = short[:12], created_by[:60]
        rows.append([short, layer.created[:19], created_by, human_bytes(layer.size)])
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE"], rows)


@image.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Give image SOURCE one more name TARGET (NAME[:TAG])."""
    _images().tag_image(source, target)


@click.command("tag")
@click.argument("source")
@click.argument("target")
def tag_command(source: str, target: str) -> None:
    """Give image SOURCE one more name TARGET (ctk image tag)."""
    _images().tag_image(source, target)


def _remove(names: tuple[str, ...], force: bool) -> None:
    backend = _images()
    remove_each(names, lambda name: backend.remove_image(name, force=force))


@image.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even when containers use it.")
@json_option
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove images (untag a name; delete the image when no name is left)."""
    _remove(names, force)


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even when containers use it.")
@json_option
def rmi(names: tuple[str, ...], force: bool) -> None:
    """Remove images (ctk image rm)."""
    _remove(names, force)


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Every unused image, not only dangling.")
@click.option("-l", "--label", multiple=True, help="Only images with label KEY=VALUE.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@json_option
def prune(all_: bool, label: tuple[str, ...], yes: bool) -> None:
    """Remove unused images: dangling ones, or every unused one with --all."""
    what = "all unused images" if all_ else "dangling images"
    confirm_prune(f"Remove {what}?", yes=yes)
    print_removed(_images().prune_images(all=all_, labels=parse_labels(label) or None))


@image.command("save")
@click.argument("name")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
def save(name: str, output: Path | None) -> None:
    """Write image NAME as a docker-archive tar (to FILE, or stdout when piped); a load
    on either engine keeps its ID."""
    chunks = with_progress(_images().save_image(name), f"save {name}")
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("refusing to write a tar to a terminal", hint="use -o FILE")
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    # A half-written tar never takes the name: written beside it, fsynced, renamed.
    fd, temp = tempfile.mkstemp(dir=output.parent or Path("."), prefix=f".{output.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes it 0600; a saved image gets a plain file's mode, as docker save's.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, output)
    except BaseException:
        os.unlink(temp)
        raise


def _read(source: Path | None) -> Iterator[bytes]:
    stream = source.open("rb") if source is not None else sys.stdin.buffer
    try:
        while chunk := stream.read(_CHUNK):
            yield chunk
    finally:
        if source is not None:
            stream.close()


@image.command("load")
@click.option(
    "-i",
    "--input",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read from FILE (default: stdin).",
)
def load(source: Path | None) -> None:
    """Load images from a docker-archive (or OCI) tar; their IDs are kept."""
    if source is None and sys.stdin.isatty():
        raise InvalidArgument("no tar on stdin", hint="use -i FILE or pipe one in")
    total = source.stat().st_size if source is not None else None
    _images().load_image(with_progress(_read(source), "load", total=total))


@contextmanager
def _status(description: str) -> Iterator[Callable[[str], None] | None]:
    """A transient status line on stderr showing the engine's latest progress line (both
    engines stream lines per layer, not byte counts for the whole transfer); None when
    stderr is no terminal or the output is --json."""
    if wants_json() or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status(description) as shown:
        yield lambda line: shown.update(f"{description}: {line[:100]}")


def _tls_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--tls-verify/--no-tls-verify",
        default=None,
        help="Verify the registry's TLS certificate (default: yes, except for a registry on "
        "a loopback address, which may speak plain HTTP). Docker decides per registry itself "
        "(insecure-registries): --no-tls-verify there only for loopback registries.",
    )(func)


def _pull(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    with _status(f"pull {reference}") as progress:
        info = _images().pull_image(reference, tls_verify=tls_verify, progress=progress)
    if wants_json():
        print_json({"reference": reference, "id": info.id, "tags": list(info.tags)})
        return
    if not quiet:
        click.echo(f"pulled {reference}", err=True)
    click.echo(info.id)


def _push(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    with _status(f"push {reference}") as progress:
        result = _images().push_image(reference, tls_verify=tls_verify, progress=progress)
    if wants_json():
        print_json(result.to_dict())
        return
    if not quiet:
        click.echo(f"pushed {reference} {result.digest}".rstrip(), err=True)
    click.echo(result.id)


_quiet = click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")


@image.command("pull")
@click.argument("reference")
@_tls_option
@_quiet
@json_option
def pull_image(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    """Pull image REFERENCE ([HOST[:PORT]/]NAME[:TAG]) from its registry; prints its ID."""
    _pull(reference, tls_verify, quiet)


@click.command("pull")
@click.argument("reference")
@_tls_option
@_quiet
@json_option
def pull(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    """Pull an image from its registry (ctk image pull)."""
    _pull(reference, tls_verify, quiet)


@image.command("push")
@click.argument("reference")
@_tls_option
@_quiet
@json_option
def push_image(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    """Push local image REFERENCE (HOST[:PORT]/NAME[:TAG], see ctk tag) to the registry it
    names; prints its ID."""
    _push(reference, tls_verify, quiet)


@click.command("push")
@click.argument("reference")
@_tls_option
@_quiet
@json_option
def push(reference: str, tls_verify: bool | None, quiet: bool) -> None:
    """Push a local image to its registry (ctk image push)."""
    _push(reference, tls_verify, quiet)
