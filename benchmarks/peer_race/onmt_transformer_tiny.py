"""OpenNMT-tf's side of the race: configs/transformer_tiny.py as an OpenNMT-tf custom model file
(``onmt-main --model=benchmarks/peer_race/onmt_transformer_tiny.py``). Runs in the OpenNMT-tf venv.

Matched with xling_zoo's model: 2 encoder and 2 decoder layers, d_model 256, 4 heads, feed-forward
512 with ReLU, pre-layer-norm with a final norm per stack, learned positions (256), one embedding
matrix for source, target and output (with an output bias), inputs scaled by sqrt(d_model),
dropout 0.1 on embeddings, attention weights and residual branches and none inside the
feed-forward block (keras-hub's TransformerEncoder/Decoder have none there).
"""

import opennmt


def model():
    return opennmt.models.Transformer(
        num_layers=2,
        num_units=256,
        num_heads=4,
        ffn_inner_dim=512,
        dropout=0.1,
        attention_dropout=0.1,
        ffn_dropout=0.0,
        position_encoder_class=lambda: opennmt.layers.PositionEmbedder(maximum_position=256),
        share_embeddings=opennmt.models.EmbeddingsSharingLevel.ALL,
        pre_norm=True,
    )
