"""The closest check to a TPU available here: the training step compiled by XLA (jit_compile=True)
on the static-shape input (``make_dataset(..., static_shapes=True)``) is traced once, compiled once
per bucket shape, and trains: the loss falls, and stays finite on the all-padding rows.

Each model trains in a fresh process: XLA reads XLA_FLAGS (here: dump every compiled module, which
is how compilations are counted) once, at its first use in a process.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# More than one pass over the tiny corpus (40 batches), so every bucket's shape and the padded last
# batches of a pass are all fed.
STEPS = 50
SIZES = {
    "lstm_seq2seq": {},  # tiny_config's own sizes.
    "transformer": {"num_encoder_layers": 1, "num_decoder_layers": 1, "hidden_dim": 32, "num_heads": 2,
                    "intermediate_dim": 64},
}


def train_compiled(config_path, result_path):
    """Runs in the child process: STEPS steps of ``trainer.make_train_step(jit_compile=True)`` on the
    static-shape training pipeline; writes the losses, the tracing count and the pass's batch shapes."""
    import ml_collections
    import tensorflow as tf

    from xling_zoo import trainer
    from xling_zoo import workdir as workdir_lib
    from xling_zoo.data import corpus, pipeline
    from xling_zoo.data.tokenizer import train_tokenizers

    config = ml_collections.ConfigDict(json.loads(pathlib.Path(config_path).read_text()))
    pair = corpus.Pair.parse(config.pair)
    train_examples = corpus.read_split(config.corpus, pair, "train")
    languages = sorted(set(pair.source_languages) | {pair.target_language})
    tokenizers = train_tokenizers(train_examples, config.tokenizer, languages, seed=config.train.seed)
    dataset = pipeline.make_dataset(corpus.load_split(config.corpus, pair, "train"), tokenizers, config.data,
                                    target_language=pair.target_language, source_languages=pair.source_languages,
                                    training=True, seed=config.train.seed, static_shapes=True)
    strategy = tf.distribute.get_strategy()
    model = workdir_lib.build_model(config, tokenizers, static_shapes=True)
    optimizer = trainer.make_optimizer(config.train)
    optimizer.build(model.trainable_variables)
    train_step = trainer.make_train_step(strategy, model, optimizer, jit_compile=True)
    iterator = iter(dataset.repeat())
    losses = [float(train_step(iterator)["loss"]) for _ in range(STEPS)]
    result = {
        "losses": losses,
        "tracings": train_step.experimental_get_tracing_count(),
        "loss_on_real_positions": getattr(model, "loss_on_real_positions", None),
        # One pass's batch shapes (another pass has the same shapes in another order).
        "pass_shapes": [list(batch["encoder_token_ids"].shape) for batch in dataset],
        "bucket_shapes": [list(shape) for shape in pipeline.batch_shapes(config.data)],
    }
    pathlib.Path(result_path).write_text(json.dumps(result))


@pytest.mark.parametrize("model_name", sorted(SIZES))
def test_compiled_training_step_on_static_batches_compiles_once_per_bucket_and_learns(
        tmp_path, tiny_config, model_name):
    config = tiny_config(model_name, **SIZES[model_name])
    config_path, result_path, dump = tmp_path / "config.json", tmp_path / "result.json", tmp_path / "xla"
    config_path.write_text(config.to_json())
    env = dict(os.environ, XLA_FLAGS=f"--xla_dump_to={dump}")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tests.test_static_shapes import train_compiled; "
                               "train_compiled(*sys.argv[1:])", str(config_path), str(result_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(result_path.read_text())

    bucket_shapes = {tuple(shape) for shape in result["bucket_shapes"]}
    assert {tuple(shape) for shape in result["pass_shapes"]} == bucket_shapes  # Both buckets are used.
    assert len(result["pass_shapes"]) < STEPS  # A whole pass, its padded batches included, was fed.
    # Traced once; compiled by XLA once per bucket shape, not per batch nor per smaller last batch.
    assert result["tracings"] == 1
    compilations = sorted(path.name for path in dump.glob("*.before_optimizations.txt"))
    assert len(compilations) == len(bucket_shapes), compilations
    # Under XLA the loss reads every position (no data-dependent gather of the real ones).
    assert result["loss_on_real_positions"] is False

    losses = result["losses"]
    assert all(math.isfinite(loss) for loss in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)
