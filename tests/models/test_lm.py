"""The lm networks: causal (a position's logits never depend on later tokens), padding-blind, and
named as a translator's decoder (what transfer by name relies on)."""

import numpy as np
import pytest
import tensorflow as tf

from xling_zoo.models.lm import LSTMLM, TransformerLM
from xling_zoo.models.lstm_seq2seq import LSTMSeq2Seq
from xling_zoo.models.transformer import TransformerSeq2Seq


def networks():
    return [TransformerLM(vocab_size=50, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
                          max_length=16, dropout=0.0),
            LSTMLM(vocab_size=50, embedding_dim=8, units=8, num_layers=2, dropout=0.0)]


@pytest.mark.parametrize("model", networks(), ids=["transformer", "lstm"])
def test_a_positions_logits_depend_on_earlier_tokens_only_and_not_on_padding(model):
    ids = tf.constant([[1, 5, 6, 7, 8, 0, 0]])
    changed_later = tf.constant([[1, 5, 6, 9, 9, 0, 0]])
    longer = tf.constant([[1, 5, 6, 7, 8]])
    logits = model({"decoder_token_ids": ids}).numpy()
    np.testing.assert_allclose(model({"decoder_token_ids": changed_later}).numpy()[:, :3], logits[:, :3], atol=1e-5)
    assert not np.allclose(model({"decoder_token_ids": changed_later}).numpy()[:, 3], logits[:, 3])
    np.testing.assert_allclose(model({"decoder_token_ids": longer}).numpy(), logits[:, :5], atol=1e-5)


def test_its_weights_are_named_as_a_translators_decoder():
    transformer_lm, lstm_lm = networks()
    translator = TransformerSeq2Seq(source_vocab_size=50, target_vocab_size=50, num_encoder_layers=1,
                                    num_decoder_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
                                    max_length=16, normalize_first=True)
    lstm_translator = LSTMSeq2Seq(source_vocab_size=50, target_vocab_size=50, embedding_dim=8, units=8, num_layers=2)
    ids = tf.constant([[5, 6, 3]])
    for model in (transformer_lm, lstm_lm):
        model({"decoder_token_ids": ids})
    for model in (translator, lstm_translator):
        model({"encoder_token_ids": ids, "decoder_token_ids": ids})

    def names(model):
        return {v.path.split("/", 1)[1]: tuple(v.shape) for v in model.weights}

    for lm, seq2seq in ((transformer_lm, translator), (lstm_lm, lstm_translator)):
        lm_names, seq2seq_names = names(lm), names(seq2seq)
        # Every LM weight but the tied translator's embedding name has its counterpart, same shape.
        missing = {name for name in lm_names if name not in seq2seq_names}
        assert missing <= {"target_embedding/embeddings"}, missing
        for name in set(lm_names) - missing:
            assert lm_names[name] == seq2seq_names[name], name


def uncached_continuation(model, prompt, limit):
    """Greedy continuation re-running the whole model on the prefix at every step: the reference."""
    from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

    sequence = [BOS_ID] + list(prompt)
    while len(sequence) - 1 < limit:
        logits = model({"decoder_token_ids": tf.constant([sequence])}).numpy()[0, -1]
        logits[[PAD_ID, BOS_ID]] = -np.inf
        sequence.append(int(np.argmax(logits)))
        if sequence[-1] == EOS_ID:
            break
    return sequence[1:]


@pytest.mark.parametrize("model", networks(), ids=["transformer", "lstm"])
@pytest.mark.parametrize("static_shapes", [False, True], ids=["growing", "static"])
def test_cached_continuation_forces_the_prompt_then_matches_the_uncached_model(model, static_shapes):
    from xling_zoo.decode import beam_search, greedy_search

    prompts = tf.constant([[5, 6, 7, 8], [9, 0, 0, 0], [0, 0, 0, 0]])  # 4 pieces, 1, none.
    lengths = tf.constant([4, 1, 0])
    output = greedy_search(model, prompts, 12, limits=lengths + 6, static_shapes=static_shapes).numpy()
    for row, (prompt, length) in enumerate(zip(prompts.numpy(), lengths.numpy())):
        expected = uncached_continuation(model, prompt[:length], length + 6)
        assert output[row, :len(expected)].tolist() == expected
        assert not output[row, len(expected):].any()
    beams = beam_search(model, prompts, 12, beam_size=3, limits=lengths + 6, static_shapes=static_shapes).numpy()
    assert beams[0, :4].tolist() == [5, 6, 7, 8] and beams[1, 0] == 9


def test_sampled_continuations_keep_the_prompt_and_repeat_with_their_seed():
    from xling_zoo.decode import greedy_search

    model = networks()[0]
    prompts = tf.constant([[5, 6], [7, 0]])
    limits = tf.constant([10, 9])

    def sample(seed):
        return greedy_search(model, prompts, 10, limits, temperature=1.5, top_k=20, seed=seed).numpy()

    first = sample(1)
    assert first[0, :2].tolist() == [5, 6] and first[1, 0] == 7
    np.testing.assert_array_equal(first, sample(1))
    assert any((sample(seed) != first).any() for seed in (2, 3, 4))
