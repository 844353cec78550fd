#!/usr/bin/python3
"""A passthrough FUSE filesystem that sleeps before every operation: a slow disk for tests.

usage: slowfs.py ROOT MOUNTPOINT DELAY_MS [use_ino]
Runs in the foreground until unmounted (fusermount -u MOUNTPOINT) or killed.
"""
import errno, os, sys, time
from fusepy import FUSE, FuseOSError, Operations


class Slow(Operations):
    def __init__(self, root, delay):
        self.root = root
        self.delay = delay

    def _p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def __call__(self, op, *args):
        if self.delay:
            time.sleep(self.delay)
        if not hasattr(self, op):
            raise FuseOSError(errno.EFAULT)
        try:
            return getattr(self, op)(*args)
        except OSError as e:
            raise FuseOSError(e.errno)

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode): return os.chmod(self._p(path), mode)
    def chown(self, path, uid, gid): return os.chown(self._p(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        return {k: getattr(st, k) for k in ('st_atime', 'st_ctime', 'st_gid', 'st_mode', 'st_mtime',
                                              'st_nlink', 'st_size', 'st_uid', 'st_ino', 'st_dev')}

    def readdir(self, path, fh): return ['.', '..'] + os.listdir(self._p(path))
    def readlink(self, path): return os.readlink(self._p(path))
    def mknod(self, path, mode, dev): return os.mknod(self._p(path), mode, dev)
    def rmdir(self, path): return os.rmdir(self._p(path))
    def mkdir(self, path, mode): return os.mkdir(self._p(path), mode)

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        return {k: getattr(st, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail',
                                              'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    def unlink(self, path): return os.unlink(self._p(path))
    def symlink(self, name, target): return os.symlink(target, self._p(name))
    def rename(self, old, new): return os.rename(self._p(old), self._p(new))
    def link(self, target, name): return os.link(self._p(name), self._p(target))
    def utimens(self, path, times=None): return os.utime(self._p(path), times)
    def open(self, path, flags): return os.open(self._p(path), flags)
    def create(self, path, mode, fi=None): return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        with open(self._p(path), 'r+') as f:
            f.truncate(length)

    def flush(self, path, fh): return 0
    def release(self, path, fh): return os.close(fh)
    def fsync(self, path, fdatasync, fh): return os.fsync(fh)


def end_with_parent():
    """Asks the kernel for a SIGTERM once the test process that started this one is gone (as
    test/helpers/end-with-parent.ts does for the Node children): libfuse then unmounts and returns."""
    import ctypes, signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        sys.exit(0)


if __name__ == '__main__':
    end_with_parent()
    root, mountpoint, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    use_ino = len(sys.argv) > 4 and sys.argv[4] == 'use_ino'
    kwargs = {'use_ino': True} if use_ino else {}
    FUSE(Slow(root, delay_ms / 1000.0), mountpoint, foreground=True, nothreads=False, **kwargs)
