"""
Import boundary: the core subpackage never imports txtai.
"""

import subprocess
import sys

# Child program: txtai made unimportable, then every core module imported
PROGRAM = """
import importlib, pkgutil, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "txtai" or name.startswith("txtai."):
            raise ImportError(f"txtai is blocked in this test: {name}")

sys.meta_path.insert(0, Blocker())

import txtai_muvera.core as core

modules = [info.name for info in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
for name in modules:
    importlib.import_module(name)

assert not any(name == "txtai" or name.startswith("txtai.") for name in sys.modules), "txtai was imported"
print(len(modules))
"""


def test_core_imports_without_txtai():
    output = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=300, check=False)
    assert output.returncode == 0, output.stderr
    assert int(output.stdout.strip()) >= 8


def test_blocker_blocks_txtai():
    # The same guard refuses an adapter module, so the test above can fail
    program = PROGRAM.replace("import txtai_muvera.core as core", "import txtai_muvera.vectors\nimport txtai_muvera.core as core")
    output = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=False)
    assert output.returncode != 0 and "txtai is blocked" in output.stderr
