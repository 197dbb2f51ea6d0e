"""Optional larger data sets (chapters 6-9): one cached file, checked by SHA-256, fetched by pooch.

Nothing in the book needs the network: every loader has an embedded default. A larger source
(full MNIST, LFW faces) is a file looked for in :func:`data_dir`; when it is missing, pooch
downloads it from the first URL that works and checks its SHA-256. A cached file whose
checksum is wrong is an error (delete it to fetch it again), never silently replaced.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pooch

TIMEOUT_S = (10, 60)  # (connect, read) seconds: a missing network fails fast


class DownloadError(RuntimeError):
    """A file is neither cached nor downloadable from any of its URLs."""


def data_dir(name: str, path: str | os.PathLike | None = None) -> Path:
    """Folder of the files of data set ``name``: ``path``, else ``$VAECOURSE_DATA/<name>``,
    else ``pooch.os_cache("vaecourse")/<name>``."""
    if path is not None:
        return Path(path)
    root = os.environ.get("VAECOURSE_DATA") or pooch.os_cache("vaecourse")
    return Path(root) / name


def fetch(fname: str, sha256: str, urls: Sequence[str], directory: Path, by_hand: str) -> Path:
    """The path of ``directory/fname``, downloaded from the first of ``urls`` that works.

    A cached file is checked against ``sha256`` (ValueError on mismatch); a download is
    checked by pooch, and a file with the wrong checksum is not kept. When every URL fails,
    DownloadError lists what was tried, followed by ``by_hand`` (how to place the file).
    """
    file = directory / fname
    if file.exists():
        actual = pooch.file_hash(str(file), alg="sha256")
        if actual != sha256:
            raise ValueError(
                f"{file}: SHA-256 is {actual}, expected {sha256}: the file is corrupted or "
                "not the published one; delete it to download it again"
            )
        return file
    errors = []
    for url in urls:
        try:
            return Path(pooch.retrieve(
                url, known_hash=f"sha256:{sha256}", fname=fname, path=directory,
                downloader=pooch.HTTPDownloader(timeout=TIMEOUT_S),
            ))
        except (OSError, ValueError) as err:  # network, HTTP and checksum errors
            errors.append(f"{url}: {err}")
    raise DownloadError(f"could not download {fname}; tried " + "; ".join(errors) + ". "
                        + by_hand)
