import numpy as np
import pytest
import tensorflow as tf

from xling_zoo import decode
from xling_zoo.data.tokenizer import EOS_ID, PAD_ID
from xling_zoo.models.lstm_seq2seq import LSTMSeq2Seq

MAX_LENGTH = 10


@pytest.fixture(scope="module")
def model():
    tf.random.set_seed(3)
    model = LSTMSeq2Seq(source_vocab_size=30, target_vocab_size=30, embedding_dim=16, units=16,
                        bidirectional=True, attention=True)
    model(model.dummy_inputs())
    return model


@pytest.fixture(scope="module")
def encoder_ids():
    return tf.constant(np.random.RandomState(0).randint(4, 30, size=(6, 7)), tf.int32)


def test_cached_greedy_equals_uncached_greedy(model, encoder_ids):
    cached = tf.function(lambda ids: decode.greedy_search(model, ids, MAX_LENGTH))(encoder_ids)
    uncached = tf.function(lambda ids: decode.uncached_greedy_search(model, ids, MAX_LENGTH))(encoder_ids)
    assert cached.shape == (6, MAX_LENGTH)
    np.testing.assert_array_equal(cached.numpy(), uncached.numpy())


def test_xla_greedy_matches(model, encoder_ids):
    plain = tf.function(lambda ids: decode.greedy_search(model, ids, MAX_LENGTH))(encoder_ids)
    compiled = tf.function(lambda ids: decode.greedy_search(model, ids, MAX_LENGTH), jit_compile=True)(encoder_ids)
    np.testing.assert_array_equal(plain.numpy(), compiled.numpy())


def test_beam_of_one_is_greedy(model, encoder_ids):
    greedy = decode.greedy_search(model, encoder_ids, MAX_LENGTH)
    beam = decode.beam_search(model, encoder_ids, MAX_LENGTH, beam_size=1, length_penalty=0.0)
    np.testing.assert_array_equal(greedy.numpy(), beam.numpy())


def sequence_log_prob(model, encoder_ids, tokens):
    """Model log-probability of each row of ``tokens`` (up to and including eos)."""
    state = model.encode(encoder_ids, MAX_LENGTH)
    previous = tf.fill([encoder_ids.shape[0]], 2)
    total = np.zeros(encoder_ids.shape[0])
    alive = np.ones(encoder_ids.shape[0], bool)
    for i in range(tokens.shape[1]):
        logits, state = model.decode_step(previous, state, tf.constant(i))
        log_probs = tf.nn.log_softmax(logits).numpy()
        total += np.where(alive, log_probs[np.arange(len(total)), tokens[:, i]], 0.0)
        alive &= tokens[:, i] != EOS_ID
        previous = tf.constant(tokens[:, i])
    return total


def test_beam_search_scores_at_least_greedy_without_penalty(model, encoder_ids):
    greedy = decode.greedy_search(model, encoder_ids, MAX_LENGTH).numpy()
    beam = decode.beam_search(model, encoder_ids, MAX_LENGTH, beam_size=4, length_penalty=0.0).numpy()
    finished = (greedy == EOS_ID).any(1) & (beam == EOS_ID).any(1)
    greedy_score = sequence_log_prob(model, encoder_ids, greedy)
    beam_score = sequence_log_prob(model, encoder_ids, beam)
    assert np.all(beam_score[finished] >= greedy_score[finished] - 1e-4)


def test_output_is_padded_after_eos(model, encoder_ids):
    for out in (decode.greedy_search(model, encoder_ids, MAX_LENGTH).numpy(),
                decode.beam_search(model, encoder_ids, MAX_LENGTH, beam_size=3).numpy()):
        for row in out:
            if EOS_ID in row:
                assert np.all(row[list(row).index(EOS_ID) + 1:] == PAD_ID)


def test_beam_size_below_one_is_refused(model, encoder_ids):
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        decode.decode(model, encoder_ids, MAX_LENGTH, beam_size=0)
