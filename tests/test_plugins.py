"""
Plugin registration tests.
"""

import json
import os
import subprocess
import sys
import textwrap

from txtai import Embeddings

from txtai_muvera import plugins
from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.hookspecs import hookimpl

from helpers import TEXTS, late


def test_defaults_registered():
    registered = plugins.registered()
    assert registered["encoders"]["colbert"] == "txtai_muvera.core.encoder.LateEncoder"
    assert registered["encodings"]["muvera"] == "txtai_muvera.core.fde.FDE"
    assert registered["stores"]["tokens"] == "txtai_muvera.core.store.TokenStore"


class CountingEncoder(LateEncoder):
    """
    An encoder plugin that counts the texts it encodes.
    """

    texts = 0

    def encode(self, texts, category="data", batchsize=None, progress=False):
        CountingEncoder.texts += len(texts)
        return super().encode(texts, category, batchsize, progress)


class EncoderPlugin:
    """
    Plugin object registering an encoder through the same hook the package uses.
    """

    @hookimpl
    def register_encoders(self, register):
        register("counting", CountingEncoder)


def test_plugin_registered_in_test_is_used(pylate_model):
    plugin = EncoderPlugin()
    plugins.register(plugin, "counting-plugin")
    try:
        assert "counting" in plugins.registered()["encoders"]

        embeddings = Embeddings(late(pylate_model, encoder="counting"))
        embeddings.index(TEXTS)
        assert CountingEncoder.texts == len(TEXTS)
        assert embeddings.search(TEXTS[10], 1)[0]["text"] == TEXTS[10]
        assert CountingEncoder.texts == len(TEXTS) + 1
    finally:
        plugins.unregister(plugin)

    assert "counting" not in plugins.registered()["encoders"]


def test_entry_point_plugins(tmp_path):
    # An installed distribution (dist-info on sys.path) declaring an entry point in the txtai_muvera group
    (tmp_path / "myplugin.py").write_text(textwrap.dedent("""
            from txtai_muvera.hookspecs import hookimpl
            from txtai_muvera.core.store import TokenStore

            class MyStore(TokenStore):
                pass

            @hookimpl
            def register_stores(register):
                register("mystore", MyStore)
            """))
    distinfo = tmp_path / "myplugin-0.1.dist-info"
    distinfo.mkdir()
    (distinfo / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (distinfo / "entry_points.txt").write_text("[txtai_muvera]\nmyplugin = myplugin\n")

    code = "import json; from txtai_muvera import plugins; print(json.dumps(plugins.registered()['stores']))"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    # Loaded by default, skipped when the environment variable is empty, selected by name
    for value, expected in [(None, True), ("", False), ("myplugin", True), ("other", False)]:
        run = {k: v for k, v in env.items() if k != plugins.LOADENV}
        if value is not None:
            run[plugins.LOADENV] = value

        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run, check=True)
        stores = json.loads(output.stdout)
        assert ("mystore" in stores) == expected, (value, stores)
        assert stores["tokens"] == "txtai_muvera.core.store.TokenStore"


def test_cli_lists_plugins():
    output = subprocess.run([sys.executable, "-m", "txtai_muvera", "plugins"], capture_output=True, text=True, check=True)
    assert "colbert" in output.stdout and "txtai_muvera.core.fde.FDE" in output.stdout
