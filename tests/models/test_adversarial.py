import keras
import numpy as np
import pytest
import tensorflow as tf

from xling_zoo import config as config_lib
from xling_zoo.data.corpus import Pair
from xling_zoo.errors import UserError
from xling_zoo.models.adversarial import AdversarialLSTM, AdversarialSeq2Seq, AdversarialTransformer
from xling_zoo.models.base import VocabInfo
from xling_zoo.registry import get_model

VOCAB = VocabInfo(source_vocab_size=40, target_vocab_size=40, joint=True, num_source_languages=3)
PAIR = Pair.parse("de,fr,es-en")
SIZES = [
    "model.transformer.num_encoder_layers=1", "model.transformer.num_decoder_layers=1",
    "model.transformer.hidden_dim=16", "model.transformer.num_heads=2",
    "model.transformer.intermediate_dim=32", "model.transformer.max_length=16",
    "model.transformer.dropout=0.0", "model.lstm.embedding_dim=8", "model.lstm.units=8",
    "model.lstm.dropout=0.0", "model.discriminator_hidden_dim=8", "model.discriminator_dropout=0.0",
]


def tiny_config(**overrides):
    """configs/adversarial.py with its translators and discriminator shrunk."""
    config = config_lib.load_config("adversarial")
    for assignment in SIZES + [f"model.{k}={v}" for k, v in overrides.items()]:
        config_lib.apply_override(config, assignment)
    return config


def tiny_model(**overrides):
    config = tiny_config(**overrides)
    model_cls = get_model(config.model_name)
    model_cls.validate_config(config.model, VOCAB, Pair.parse(config.pair))
    model = model_cls.from_config(config.model, VOCAB)
    model(model.dummy_inputs())
    return model


def synthetic_batch(seed=0, batch_size=12):
    """Copy task whose source language is visible in the tokens (each language its own id range)."""
    rng = np.random.RandomState(seed)
    language = rng.randint(0, 3, size=batch_size)
    tokens = rng.randint(4, 12, size=(batch_size, 6)) + 12 * language[:, None]
    tokens[:, -1] = 3
    tokens[: batch_size // 2, -2:] = [3, 0]  # Some padding.
    bos = np.full((batch_size, 1), 2)
    return {"encoder_token_ids": tf.constant(tokens, tf.int32),
            "decoder_token_ids": tf.constant(np.concatenate([bos, tokens[:, :-1]], 1), tf.int32),
            "target_token_ids": tf.constant(tokens, tf.int32),
            "source_language_id": tf.constant(language, tf.int32)}


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize("encoder_type, cls", [("transformer", AdversarialTransformer), ("lstm", AdversarialLSTM)])
def test_config_file_builds_either_translator(encoder_type, cls):
    model = tiny_model(encoder_type=encoder_type)
    assert type(model) is cls and isinstance(model, AdversarialSeq2Seq)
    assert model.registered_name == "adversarial" and model.task_type == "seq2seq"
    groups = model.layer_groups()
    assert groups["discriminator"] == ["discriminator_hidden_0", "discriminator_logits"]
    layer_names = {layer.name for layer in model.layers}
    for group in groups.values():
        assert set(group) <= layer_names
    losses = model.compute_losses(synthetic_batch())
    assert set(losses) == {"loss", "translation_loss", "discriminator_loss", "discriminator_accuracy"}
    clone = AdversarialSeq2Seq.from_config(model.get_config())
    assert type(clone) is cls and clone.get_config() == model.get_config()


def test_translator_weights_are_the_plain_translators_then_the_discriminator():
    # What lets a parent trained here hand its translator to a transformer child by weight path.
    model = tiny_model()
    config = tiny_config().model
    plain = get_model("transformer").from_config(config.transformer, VOCAB)
    plain(plain.dummy_inputs())
    paths = [v.path.split("/", 1)[1] for v in model.weights]
    assert paths[:len(plain.weights)] == [v.path.split("/", 1)[1] for v in plain.weights]
    assert paths[len(plain.weights):] == [v.path.split("/", 1)[1] for v in model.discriminator_variables]
    assert all(v.path.startswith("adversarial/discriminator_") for v in model.discriminator_variables)


def test_single_source_pair_is_refused():
    config = tiny_config()
    with pytest.raises(UserError, match="several source languages, e.g. --pair=de,fr,es-en"):
        AdversarialSeq2Seq.validate_config(config.model, VOCAB, Pair.parse("de-en"))
    config.model.encoder_type = "gru"
    with pytest.raises(UserError, match="encoder_type='gru'"):
        AdversarialSeq2Seq.validate_config(config.model, VOCAB, PAIR)
    config.model.encoder_type = "transformer"
    config.model.transformer.num_heads = 3
    with pytest.raises(UserError, match="model.transformer.*num_heads=3 must divide"):
        AdversarialSeq2Seq.validate_config(config.model, VOCAB, PAIR)


def encoder_and_discriminator_gradients(model, batch, weight):
    encoder = model.get_layer("encoder_layer_0").trainable_variables
    discriminator = model.discriminator_variables
    with tf.GradientTape() as tape:
        losses = model.compute_losses(batch, reversal_weight=weight)
    grads = tape.gradient(losses["discriminator_loss"], encoder + discriminator)
    return [g.numpy() for g in grads[:len(encoder)]], [g.numpy() for g in grads[len(encoder):]]


def test_reversal_flips_the_encoder_gradient_of_the_adversarial_term():
    model = tiny_model()
    batch = synthetic_batch()
    # weight -1 turns the reversal into the identity: the plain gradient of the discriminator loss.
    plain_encoder, plain_discriminator = encoder_and_discriminator_gradients(model, batch, -1.0)
    reversed_encoder, reversed_discriminator = encoder_and_discriminator_gradients(model, batch, 0.5)
    assert max(np.abs(g).max() for g in plain_encoder) > 0
    for plain, reversed_ in zip(plain_encoder, reversed_encoder):
        np.testing.assert_allclose(reversed_, -0.5 * plain, rtol=1e-4, atol=1e-7)
    for plain, reversed_ in zip(plain_discriminator, reversed_discriminator):
        np.testing.assert_allclose(reversed_, plain, rtol=1e-5, atol=1e-7)
    # adversary off: no gradient of the discriminator reaches the encoder.
    off = tiny_model(adversary=False)
    off_encoder, _ = encoder_and_discriminator_gradients(off, batch, off.reversal_weight(1000))
    assert all(not np.any(g) for g in off_encoder)


def test_reversal_weight_ramps_from_zero():
    model = tiny_model(adversary_weight=0.5, adversary_ramp_steps=100)
    weights = [float(model.reversal_weight(step)) for step in (0, 10, 50, 100, 1000)]
    assert weights[0] == 0.0 and weights == sorted(weights)
    assert weights[-1] == pytest.approx(0.5 * (2 / (1 + np.exp(-10)) - 1))
    assert float(tiny_model(adversary=False).reversal_weight(1000)) == 0.0


def test_discriminator_steps_touch_only_the_discriminator():
    model = tiny_model(discriminator_steps=3)
    translator, discriminator = model.translation_variables, model.discriminator_variables
    assert len(translator) + len(discriminator) == len(model.trainable_variables)
    # A frozen main optimizer: whatever changes was changed by the discriminator-only updates.
    optimizer = keras.optimizers.SGD(learning_rate=0.0)
    optimizer.build(model.trainable_variables)  # As the trainer does: every trainable variable.
    before_translator, before_discriminator = snapshot(translator), snapshot(discriminator)
    tf.function(lambda batch: model.training_step(batch, optimizer))(synthetic_batch())
    assert not any(changed(before_translator, translator))
    assert all(changed(before_discriminator, discriminator))
    assert int(model.discriminator_optimizer.iterations) == 3 and int(optimizer.iterations) == 1


def test_joint_step_leaves_the_discriminator_to_its_own_optimizer():
    model = tiny_model(discriminator_learning_rate=0.0)
    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    before_translator, before_discriminator = snapshot(model.translation_variables), snapshot(model.discriminator_variables)
    model.training_step(synthetic_batch(), optimizer)
    assert not any(changed(before_discriminator, model.discriminator_variables))
    assert any(changed(before_translator, model.translation_variables))


def test_lstm_translator_trains():
    # (The transformer translator trains in test_the_adversary_hides_the_language_the_baseline_reveals.)
    keras.utils.set_random_seed(1)
    model = tiny_model(encoder_type="lstm", adversary_ramp_steps=10, adversary_weight=0.1)
    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    step = tf.function(lambda batch: model.training_step(batch, optimizer))
    batch = synthetic_batch()
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(25)]
    assert all(np.isfinite(list(h.values())).all() for h in history)
    # The 8-unit LSTM learns slowly (loss ratio ~0.7 after 25 steps).
    assert history[-1]["translation_loss"] < 0.85 * history[0]["translation_loss"]
    assert history[-1]["reversal_weight"] > 0.09


def test_cached_steps_equal_teacher_forcing():
    model = tiny_model()
    batch = synthetic_batch(batch_size=2)
    full = model(batch)
    state = model.encode(batch["encoder_token_ids"], 6)
    steps = []
    for i in range(6):
        logits, state = model.decode_step(batch["decoder_token_ids"][:, i], state, tf.constant(i))
        steps.append(logits)
    np.testing.assert_allclose(tf.stack(steps, 1), full, atol=1e-4)


# The confusion gradient fades as the discriminator nears uniform: it needs more steps.
@pytest.mark.parametrize("objective,steps", [("reversal", 30), ("confusion", 60)])
def test_the_adversary_hides_the_language_the_baseline_reveals(objective, steps):
    # The synthetic languages use disjoint token ranges, so their encodings differ unless the
    # encoder is pushed to hide them.
    keras.utils.set_random_seed(1)
    batch = synthetic_batch(batch_size=24)
    accuracy, loss = {}, {}
    for adversary in (False, True):
        model = tiny_model(adversary=adversary, adversary_objective=objective, adversary_weight=1.0,
                           adversary_ramp_steps=0, discriminator_learning_rate=1e-2)
        optimizer = keras.optimizers.Adam(learning_rate=1e-2)
        step = tf.function(lambda batch: model.training_step(batch, optimizer))
        history = [{k: float(v) for k, v in step(batch).items()} for _ in range(steps)]
        assert all(np.isfinite(list(h.values())).all() for h in history)
        accuracy[adversary] = np.mean([h["discriminator_accuracy"] for h in history[-8:]])
        loss[adversary] = np.mean([h["discriminator_loss"] for h in history[-8:]])
        assert history[-1]["translation_loss"] < 0.5 * history[0]["translation_loss"]
    assert accuracy[False] > 0.8 and loss[False] < 0.1
    if objective == "reversal":
        # Chance is 1/3; the reversed gradient often drives the discriminator below it.
        assert accuracy[True] < 0.6
    else:
        # Confusion flattens the discriminator's probabilities toward uniform (loss ln 3 = 1.10):
        # its argmax can stay right more often than chance while it is nearly uninformed.
        assert loss[True] > 0.75 * np.log(3) and accuracy[True] < accuracy[False]


def test_confusion_pushes_the_encoder_toward_a_uniform_discriminator():
    model = tiny_model(adversary_objective="confusion", adversary_ramp_steps=0, adversary_weight=1.0)
    batch = synthetic_batch()
    encoder = model.get_layer("encoder_layer_0").trainable_variables
    with tf.GradientTape() as tape:
        losses = model.compute_losses(batch, reversal_weight=1.0)
        adversary_term = losses["loss"] - tf.cast(losses["translation_loss"], tf.float32)
    # The adversary's term is the cross-entropy of the discriminator's output against uniform:
    # at least ln(3), reached only when the discriminator cannot tell the languages apart.
    assert float(adversary_term) >= np.log(3) - 1e-5
    grads = tape.gradient(adversary_term, encoder + model.discriminator_variables)
    assert max(np.abs(g.numpy()).max() for g in grads[:len(encoder)]) > 0


def test_unknown_objective_is_refused():
    config = tiny_config(adversary_objective="flip")
    with pytest.raises(UserError, match="adversary_objective='flip' is not one of confusion, reversal"):
        AdversarialSeq2Seq.validate_config(config.model, VOCAB, PAIR)
