"""`make lab-up`'s base-image step (lab/base_image.py): plain progress, the system's Python."""

import io
import subprocess
import sys

from lab import base_image, resources


def test_progress_shows_phases_not_every_package_nor_blank_lines():
    out = io.StringIO()
    p = base_image._Progress(out)
    for line in ["I: running apt-get update...\n", "I: Retrieving libc6 2.41\n", "\n", "I: Unpacking bash\n"]:
        p.line(line)
    for _ in range(50):
        p.advance()
    assert out.getvalue().splitlines() == ["base image: I: running apt-get update...",
                                           "base image: 25 package steps", "base image: 50 package steps"]


def test_it_imports_without_the_virtualenv():
    # the system's Python has none of the lab's dependencies: the module must need none
    code = "import sys; sys.modules['docker'] = None; sys.modules['rich'] = None; import lab.base_image"
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {code}"], check=True,
                   cwd=str(resources.CHECKOUT))
