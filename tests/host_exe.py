"""The command that runs an executable this build made.

In a cross build (cross/aarch64-linux-gnu.ini) meson runs the C tests through
the cross file's exe_wrapper (qemu-aarch64) and gives every test that takes
a built executable as an argument that wrapper in MESON_EXE_WRAPPER; the
Python tests run the segmamba CLI through it the same way. Natively the
variable is absent and the executable runs directly.
"""
import os
import shlex


def host_command(exe):
    return shlex.split(os.environ.get("MESON_EXE_WRAPPER", "")) + [exe]
