import keras
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


class EosAt(tf.Module):
    """The test model with eos made likely at one step of each sentence (set by its first source
    token) after an even token, 3 steps later after an odd one, and unlikely otherwise; and a free
    path: after token 7 the model repeats 7 at no cost and ends 12 steps after the first chance, so
    with a length penalty a long, late hypothesis can overtake an early finished one. Sentences end
    at many different steps, and the hypotheses that miss every chance run on, as a real model's
    degenerate ones do. Counts decoding steps."""

    FREE_TOKEN = 7

    def __init__(self, model, likely=6.0, unlikely=-4.0):
        super().__init__()
        self.model, self.likely, self.unlikely = model, float(likely), float(unlikely)
        self.steps = tf.Variable(0, dtype=tf.int32, trainable=False)

    def encode(self, ids, max_length, static_shapes=True):
        eos_step = 2 + 4 * (ids[:, 0] % 5)
        return self.model.encode(ids, max_length, static_shapes), eos_step

    def decoding_state_shapes(self, state):
        return self.model.decoding_state_shapes(state[0]), tf.TensorShape([None])

    def decoding_weights(self):
        return self.model.decoding_weights()

    def decode_step(self, tokens, state, index, weights=None):
        self.steps.assign_add(1)
        state, eos_step = state
        logits, state = self.model.decode_step(tokens, state, index, weights)
        vocab = tf.shape(logits)[-1]
        first_chance = tf.equal(eos_step, index) & tf.equal(tokens % 2, 0)
        second_chance = tf.equal(eos_step + 3, index) & tf.equal(tokens % 2, 1)
        boost = tf.where(first_chance | second_chance, self.likely, self.unlikely)
        logits += tf.one_hot(EOS_ID, vocab) * boost[:, None]
        free = tf.equal(tokens, self.FREE_TOKEN)
        forced = tf.where(tf.equal(index, eos_step + 12), EOS_ID, self.FREE_TOKEN)
        logits += tf.one_hot(forced, vocab) * tf.where(free, 50.0, 0.0)[:, None]
        return logits, (state, eos_step)


@pytest.fixture(scope="module")
def seeded_model():
    keras.utils.set_random_seed(3)  # tf.random.set_seed alone leaves Keras' initializers unseeded.
    model = LSTMSeq2Seq(source_vocab_size=30, target_vocab_size=30, embedding_dim=16, units=16,
                        bidirectional=True, attention=True)
    model(model.dummy_inputs())
    return model


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0, -0.5])
def test_beam_search_stops_early_with_the_same_translations(seeded_model, length_penalty):
    ids = tf.constant(np.random.RandomState(1).randint(4, 30, size=(24, 7)), tf.int32)
    results, steps = {}, {}
    for stop_early in (False, True):
        wrapped = EosAt(seeded_model)
        search = tf.function(lambda ids: decode.beam_search(wrapped, ids, 40, beam_size=4,
                                                            length_penalty=length_penalty, stop_early=stop_early))
        results[stop_early] = search(ids).numpy()
        steps[stop_early] = int(wrapped.steps.numpy())
    np.testing.assert_array_equal(results[True], results[False])
    lengths = (results[True] != PAD_ID).sum(1)
    assert len(set(lengths.tolist())) > 3  # Sentences end at many different lengths.
    assert steps[True] < steps[False]


def reference_beam_search(model, encoder_ids, max_length, beam_size, length_penalty):
    """Textbook beam search, one sentence at a time in Python: every hypothesis expanded over the
    whole vocabulary, the k best by GNMT-normalised score kept, finished ones carried on by padding
    at no cost, until every kept hypothesis has finished or max_length. The float32 arithmetic is
    decode.beam_search's, so the two must agree token for token."""
    results = []
    for row in encoder_ids.numpy():
        state = model.encode(tf.constant(row[None, :]), max_length, False)
        weights = model.decoding_weights()
        # (score, length, finished, tokens, state) per hypothesis.
        beam = [(np.float32(0.0), 0, False, [], state)]
        for i in range(max_length):
            if all(finished for _, _, finished, _, _ in beam):
                break
            candidates = []
            for index, (score, length, finished, tokens, state) in enumerate(beam):
                if finished:
                    candidates.append((score, length, True, tokens + [PAD_ID], state, index, PAD_ID))
                    continue
                previous = tf.constant([tokens[-1] if tokens else 2])
                logits, new_state = model.decode_step(previous, state, tf.constant(i), weights)
                log_probs = tf.nn.log_softmax(decode._forbid_special(logits))[0].numpy()
                for token, log_prob in enumerate(log_probs):
                    candidates.append((np.float32(score + log_prob), length + 1, token == EOS_ID,
                                       tokens + [token], new_state, index, token))
            penalty = lambda length: ((5.0 + length) / 6.0) ** length_penalty  # noqa: E731
            # Best normalised score first; ties by (hypothesis, token), decode.beam_search's order.
            candidates.sort(key=lambda c: (-np.float32(c[0] / np.float32(penalty(c[1]))), c[5], c[6]))
            beam = [c[:5] for c in candidates[:beam_size]]
        final = [(score / penalty(length) if finished else -np.inf, tokens)
                 for score, length, finished, tokens, _ in beam]
        best = max(range(len(final)), key=lambda j: (final[j][0], -j))
        tokens = final[best][1]
        results.append(tokens + [PAD_ID] * (max_length - len(tokens)))
    return np.array(results)


# A strong length penalty (3.0) makes long hypotheses overtake finished ones: ranking candidates by
# their raw instead of their normalised scores then changes the result.
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 3.0])
def test_beam_search_equals_the_textbook_search(seeded_model, length_penalty):
    """decode.beam_search only looks at each hypothesis's k best tokens and stops on its bound: it
    must still pick exactly what a search over the whole vocabulary does."""
    ids = tf.constant(np.random.RandomState(2).randint(4, 30, size=(6, 7)), tf.int32)
    model = EosAt(seeded_model)
    fast = tf.function(lambda ids: decode.beam_search(model, ids, 16, beam_size=3,
                                                      length_penalty=length_penalty))(ids).numpy()
    reference = reference_beam_search(model, ids, 16, 3, length_penalty)
    assert len(set((reference != PAD_ID).sum(1).tolist())) > 1  # Sentences end at different lengths.
    np.testing.assert_array_equal(fast, reference)


def test_beam_search_is_done_only_when_no_alive_hypothesis_can_overtake():
    def done(finished_score, alive_score, length_penalty, alive_length=3, limit=40):
        # One sentence, two hypotheses: one finished at length 3, one alive at alive_length.
        scores = tf.constant([[finished_score, alive_score]])
        lengths = tf.constant([[3, alive_length]])
        finished = tf.constant([[True, False]])
        return bool(decode.beam_search_done(scores, lengths, finished, tf.constant([limit]), length_penalty)[0])

    # alpha = 1: finished -3 / (8/6) = -2.25; alive -5.5 is below it now (-5.5 / (9/6) = -3.7 at the
    # next step) but could reach -5.5 / (45/6) = -0.73 at length 40: not done. At a limit of 4 it can't.
    assert not done(-3.0, -5.5, 1.0)
    assert done(-3.0, -5.5, 1.0, limit=4)
    assert done(-3.0, -30.0, 1.0)
    # alpha = 0: scores only fall, so an alive hypothesis below the finished one is beaten for good.
    assert done(-3.0, -3.5, 0.0)
    assert not done(-3.0, -2.5, 0.0)
    # alpha < 0 favours short hypotheses: the bound is the next length's penalty.
    assert done(-3.0, -3.2, -0.5, alive_length=3)
    # No finished hypothesis yet: never done.
    assert not bool(decode.beam_search_done(tf.constant([[-1.0, -2.0]]), tf.constant([[3, 3]]),
                                            tf.constant([[False, False]]), tf.constant([40]), 0.6)[0])


def test_decode_length_limits_cut_each_sentence_at_its_own_length(model):
    ids = tf.constant([[5, 6, 7, 8, 9, 10], [5, 6, PAD_ID, PAD_ID, PAD_ID, PAD_ID]], tf.int32)
    limits = decode.decode_length_limits(ids, MAX_LENGTH, ratio=1.0, offset=2)
    assert limits.numpy().tolist() == [min(8, MAX_LENGTH), 4]
    assert decode.decode_length_limits(ids, MAX_LENGTH).numpy().tolist() == [MAX_LENGTH, MAX_LENGTH]
    never_eos = EosAt(model, likely=-1e4, unlikely=-1e4)  # eos never wins: every sentence runs to its limit.
    for beam_size in (1, 3):
        out = decode.decode(never_eos, ids, MAX_LENGTH, beam_size, length_ratio=1.0, length_offset=2).numpy()
        assert out.shape == (2, MAX_LENGTH)
        assert (out != PAD_ID).sum(1).tolist() == [8, 4]
        # The cut sentence's tokens are what a search with that maximum length gives.
        alone = decode.decode(never_eos, ids[1:], 4, beam_size).numpy()
        np.testing.assert_array_equal(out[1, :4], alone[0])
