"""Tests of torchgeo_ext.export.atomic: write to a temporary sibling, rename on success."""

import errno
import os
from pathlib import Path

import pytest

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.atomic import (
    atomic_output,
    check_writable,
    check_writable_dir,
    disk_full,
    make_output_dir,
    output_transaction,
    registered_temporaries,
    temporary_directory,
    write_error,
)

ROOT = os.name != 'nt' and os.geteuid() == 0
needs_permissions = pytest.mark.skipif(
    ROOT or os.name == 'nt', reason='root (or Windows) ignores POSIX permission bits'
)


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*'))


def write(out: Path, data: bytes = b'', error: BaseException | None = None) -> Path:
    """Write *data* (and a side file) through atomic_output, then raise *error* if given."""
    with atomic_output(out) as tmp:
        if data:
            tmp.write_bytes(data)
            (tmp.parent / (tmp.name + '.aux.xml')).write_text('<side file/>')
        if error is not None:
            raise error
    return out


def test_writes_through_a_hidden_sibling_then_renames(tmp_path: Path) -> None:
    out = tmp_path / 'scores.tif'
    with atomic_output(out) as tmp:
        # beside the output (same file system: the rename is atomic), hidden,
        # with the output's suffix (writers pick the format by extension)
        assert tmp.parent == out.parent.absolute()
        assert tmp.name.startswith('.scores.tmp-')
        assert tmp.suffix == '.tif'
        assert not tmp.exists()
        assert not out.exists()
        tmp.write_bytes(b'data')
        assert tmp in registered_temporaries()
        assert not out.exists()  # nothing under the name until the block ends
    assert out.read_bytes() == b'data'
    assert listing(tmp_path) == ['scores.tif']
    assert tmp not in registered_temporaries()


def test_exception_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / 'out.gpkg'
    with pytest.raises(RuntimeError, match='writer failed'):
        write(out, b'half a file', RuntimeError('writer failed'))
    assert listing(tmp_path) == []
    assert registered_temporaries() == []


def test_exception_keeps_the_existing_file(tmp_path: Path) -> None:
    out = tmp_path / 'out.csv'
    out.write_text('old\n')
    with pytest.raises(KeyboardInterrupt):
        write(out, b'new\n', KeyboardInterrupt())
    assert out.read_text() == 'old\n'
    assert listing(tmp_path) == ['out.csv']


def test_replaces_an_existing_file_in_one_rename(tmp_path: Path) -> None:
    out = tmp_path / 'out.csv'
    out.write_text('old\n')
    with open(out) as reader:  # a reader of the old file keeps reading it whole
        with atomic_output(out) as tmp:
            tmp.write_text('new\n')
            assert out.read_text() == 'old\n'
        assert out.read_text() == 'new\n'
        assert reader.read() == 'old\n'
    assert listing(tmp_path) == ['out.csv']


def test_side_files_are_removed_on_success(tmp_path: Path) -> None:
    out = tmp_path / 'image.tif'
    with atomic_output(out) as tmp:
        tmp.write_bytes(b'tiff')
        (tmp.parent / (tmp.name + '.aux.xml')).write_text('<stats/>')
    assert listing(tmp_path) == ['image.tif']


def test_writer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / 'nothing.tif'
    with pytest.raises(InvalidInputError, match='the writer produced no file'):
        write(out)
    assert listing(tmp_path) == []


def test_folder_outputs_are_renamed_whole(tmp_path: Path) -> None:
    out = tmp_path / 'tiles'
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / 'a.txt').write_text('a')
    assert listing(tmp_path) == ['tiles', 'tiles/a.txt']


def test_missing_folders_are_created(tmp_path: Path) -> None:
    out = tmp_path / 'a' / 'b' / 'out.txt'
    with atomic_output(out) as tmp:
        tmp.write_text('x')
    assert out.read_text() == 'x'


def test_full_disk_names_the_output_not_the_temporary(tmp_path: Path) -> None:
    out = tmp_path / 'out.tif'
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'somewhere')
    with pytest.raises(OSError, match='No space left') as caught:
        write(out, b'x', full)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == os.fspath(out)
    assert 'nothing was written under this name' in str(caught.value)
    assert listing(tmp_path) == []


def test_oserror_on_the_temporary_is_reported_for_the_output(tmp_path: Path) -> None:
    out = tmp_path / 'out.tif'

    def write_denied() -> None:
        with atomic_output(out) as tmp:
            raise PermissionError(errno.EACCES, 'Permission denied', str(tmp))

    with pytest.raises(PermissionError) as caught:
        write_denied()
    assert caught.value.filename == os.fspath(out)


def test_input_errors_pass_through_unchanged(tmp_path: Path) -> None:
    error = MissingInputError(tmp_path / 'in.tif', 'not found')
    with pytest.raises(MissingInputError) as caught:
        write(tmp_path / 'out.tif', b'x', error)
    assert caught.value is error
    assert listing(tmp_path) == []


def test_refuses_a_folder_before_yielding(tmp_path: Path) -> None:
    (tmp_path / 'dir').mkdir()
    with pytest.raises(InvalidInputError, match='existing folder'):
        write(tmp_path / 'dir', b'x')
    assert listing(tmp_path) == ['dir']


def test_check_writable_creates_nothing(tmp_path: Path) -> None:
    out = check_writable(tmp_path / 'new' / 'deeper' / 'out.tif')
    assert out == (tmp_path / 'new' / 'deeper' / 'out.tif').absolute()
    assert listing(tmp_path) == []  # not even the probe


def test_check_writable_refuses_a_file_as_folder(tmp_path: Path) -> None:
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InvalidInputError, match='is a file, not a folder'):
        check_writable(tmp_path / 'file' / 'out.tif')


@needs_permissions
def test_check_writable_refuses_read_only_places(tmp_path: Path) -> None:
    locked = tmp_path / 'locked.tif'
    locked.write_text('x')
    locked.chmod(0o444)
    with pytest.raises(InvalidInputError, match='read-only'):
        check_writable(locked)
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InvalidInputError, match='cannot write the output'):
            check_writable(folder / 'out.tif')
    finally:
        folder.chmod(0o755)


def test_check_writable_dir(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path / 'new') == (tmp_path / 'new').absolute()
    assert not (tmp_path / 'new').exists()
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InvalidInputError, match='this is an existing file'):
        check_writable_dir(tmp_path / 'file')
    with pytest.raises(InvalidInputError, match='is a file'):
        check_writable_dir(tmp_path / 'file' / 'sub')


def test_make_output_dir(tmp_path: Path) -> None:
    assert make_output_dir(tmp_path / 'a' / 'b').is_dir()
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InvalidInputError, match='cannot create the output folder'):
        make_output_dir(tmp_path / 'file' / 'sub')


def test_transaction_undoes_every_output(tmp_path: Path) -> None:
    kept = tmp_path / 'kept.txt'
    kept.write_text('before')

    def command() -> None:
        with output_transaction():
            write(kept, b'after')
            write(tmp_path / 'sub' / 'new.txt', b'new')
            assert kept.read_text() == 'after'
            with output_transaction():  # nested: joins the outer one
                write(tmp_path / 'inner.txt', b'inner')
            raise RuntimeError('a later step failed')

    with pytest.raises(RuntimeError, match='a later step failed'):
        command()
    assert listing(tmp_path) == ['kept.txt']  # new folder removed too
    assert kept.read_text() == 'before'
    assert registered_temporaries() == []


def test_transaction_keeps_every_output_on_success(tmp_path: Path) -> None:
    out = tmp_path / 'out.txt'
    out.write_text('before')
    with output_transaction(), atomic_output(out) as tmp:
        tmp.write_text('after')
    assert out.read_text() == 'after'
    assert listing(tmp_path) == ['out.txt']  # no backup left


def test_temporary_directory_is_removed(tmp_path: Path) -> None:
    with temporary_directory(tmp_path) as folder:
        assert folder.is_dir()
        assert folder.name.startswith('.torchgeo-ext-')
        assert folder in registered_temporaries()
        (folder / 'x').write_text('x')
    assert listing(tmp_path) == []

    def fail_inside() -> None:
        with temporary_directory(tmp_path):
            raise RuntimeError('failed')

    with pytest.raises(RuntimeError, match='failed'):
        fail_inside()
    assert listing(tmp_path) == []
    assert registered_temporaries() == []


def test_disk_full_and_write_error(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, 'No space left on device')
    wrapped = RuntimeError('See previous exception for details')
    wrapped.__cause__ = full
    assert disk_full(wrapped, tmp_path)
    assert disk_full(RuntimeError('sqlite: database or disk is full'), tmp_path)
    assert not disk_full(ValueError('bad band'), tmp_path)
    reported = write_error(wrapped, tmp_path / 'out.tif', what='the scores')
    assert isinstance(reported, OSError)
    assert str(reported).startswith('[Errno 28] the scores: ')
    assert write_error(ValueError('bad band'), tmp_path / 'out.tif') is None
    assert write_error(KeyboardInterrupt(), tmp_path / 'out.tif') is None
