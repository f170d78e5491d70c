"""Export a ``transformer`` run to CTranslate2, the inference engine NMT users deploy on CPUs.

    python -m xling_zoo.export --format=ctranslate2 --workdir=RUN [--export_dir=DIR]
        [--quantization=float32|int8|int8_float32|int16|float16|...] [--target_language=de]

writes a CTranslate2 model folder (``model.bin``, ``config.json``, the vocabulary as JSON), the run's
SentencePiece model(s) beside it, and ``xling_zoo_ctranslate2.json``: which tokens to put around
the source pieces (the target-language tag), the special tokens and ids, and the
``translate_batch`` options that decode as xling_zoo does. The weights fill CTranslate2's own
``TransformerSpec`` (as its converters for OpenNMT-tf and fairseq do), which validates and quantizes
them and writes the files.

How our Transformer maps onto the spec: pre- or post-layer-norm (``pre_norm``), learned positions
(``position_encodings``), embeddings scaled by sqrt(hidden_dim) (``scale_embeddings``), the
attention's query/key/value kernels fused as CTranslate2 expects, the tied or untied output matrix
with our output bias. Our decoding never emits <pad> or <s> (``decode._forbid_special``): that rule
is baked into the output bias here, so a plain ``translate_batch`` follows it too. The source gets
[<2xx>] + pieces + [</s>] as ``encode_source`` builds it: </s> is added by CTranslate2
(``add_source_eos``), the tag by the caller, and ``max_input_length`` truncates as ``encode_source``
does (keeping </s>).

Greedy decoding gives our token ids (tests/test_ctranslate2_export.py). Beam search does not in
general: CTranslate2 divides a hypothesis's score by length ** length_penalty and collects finished
hypotheses outside the beam, ours uses the GNMT penalty ((5 + length) / 6) ** alpha over a beam that
keeps its finished hypotheses.

Same rules as the SavedModel export: everything that can fail fails before anything is written, the
model is written into a hidden sibling folder, loaded back in CTranslate2, and only then renamed
into place; an existing folder is never overwritten. CTranslate2 reads local folders only.
"""

import importlib.util
import json
import os
import shutil
import uuid

import keras
import numpy as np
import tensorflow as tf

from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, language_tag
from xling_zoo.decode import Translator, normalize_whitespace, target_language_of
from xling_zoo.errors import UserError
from xling_zoo.export import is_local, publish

SUPPORTED_MODELS = ("transformer",)
METADATA_FILE = "xling_zoo_ctranslate2.json"
# CTranslate2's weight types (ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES; a test keeps them
# equal), listed here so that the flag can name them without importing CTranslate2.
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16")
# Added to the <pad> and <s> logits: no softmax gives them mass (exp(-3e4) is 0 in float32), and it
# stays finite in a float16 model (whose range ends at 65504).
FORBIDDEN_LOGIT_BIAS = -3e4
# CTranslate2's activations by Keras name (ctranslate2.specs.common_spec.Activation).
ACTIVATIONS = {"relu": "RELU", "gelu": "GELU"}


def import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise UserError("--format=ctranslate2 needs the ctranslate2 package: pip install 'xling_zoo[ctranslate2]'") \
            from None
    return ctranslate2


def check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization={quantization} is not a CTranslate2 weight type; use one of "
                        f"{', '.join(QUANTIZATIONS)}")
    if "bfloat16" in quantization and importlib.util.find_spec("torch") is None:
        raise UserError(f"--quantization={quantization}: CTranslate2 converts weights to bfloat16 with PyTorch, "
                        "which is not installed; pip install torch, or use float16")


def check_model_name(model_name):
    if model_name not in SUPPORTED_MODELS:
        raise UserError(f"--format=ctranslate2 exports {' and '.join(SUPPORTED_MODELS)} runs; this run is "
                        f"{model_name} (export it as a SavedModel: --format=savedmodel)")


def default_export_dir(workdir, quantization, target_language, multi_target):
    name = f"ctranslate2-{target_language}-{quantization}" if multi_target else f"ctranslate2-{quantization}"
    return os.path.join(str(workdir), name)


# === Our weights -> CTranslate2's TransformerSpec ===

def _numpy(variable):
    return np.ascontiguousarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _set_dense(spec, dense):
    """A Keras Dense (kernel [in, out]) as a CTranslate2 linear (weight [out, in], as PyTorch's)."""
    spec.weight = np.ascontiguousarray(_numpy(dense.kernel).T)
    spec.bias = _numpy(dense.bias)


def _projection(dense):
    """A MultiHeadAttention input projection (EinsumDense, kernel [width, heads, head_dim]) as
    (weight [heads * head_dim, width], bias): heads side by side, as CTranslate2 splits them."""
    kernel = _numpy(dense.kernel)
    return np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1).T), _numpy(dense.bias).reshape(-1)


def _set_fused(spec, denses):
    weights, biases = zip(*(_projection(dense) for dense in denses))
    spec.weight = np.concatenate(weights)
    spec.bias = np.concatenate(biases)


def _set_attention(spec, attention, layer_norm, self_attention):
    """CTranslate2's self-attention is linear[0] = q|k|v, linear[1] = output; its cross-attention
    linear[0] = q, linear[1] = k|v, linear[2] = output. The layer norm is the sublayer's own (applied
    before it in a pre-LN model, after the residual in a post-LN one, like keras-hub's)."""
    projections = [attention._query_dense, attention._key_dense, attention._value_dense]
    if self_attention:
        _set_fused(spec.linear[0], projections)
    else:
        _set_fused(spec.linear[0], projections[:1])
        _set_fused(spec.linear[1], projections[1:])
    kernel = _numpy(attention._output_dense.kernel)  # [heads, head_dim, width]
    spec.linear[-1].weight = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)
    spec.linear[-1].bias = _numpy(attention._output_dense.bias)
    _set_layer_norm(spec.layer_norm, layer_norm)


def _set_feedforward(spec, layer):
    _set_dense(spec.linear_0, layer._feedforward_intermediate_dense)
    _set_dense(spec.linear_1, layer._feedforward_output_dense)
    _set_layer_norm(spec.layer_norm, layer._feedforward_layer_norm)


def _set_layer_norm(spec, layer_norm):
    spec.gamma = _numpy(layer_norm.gamma)
    spec.beta = _numpy(layer_norm.beta)


def _layer_norms(model):
    norms = [norm for layer in model.encoder_layers for norm in
             (layer._self_attention_layer_norm, layer._feedforward_layer_norm)]
    norms += [norm for layer in model.decoder_layers for norm in
              (layer._self_attention_layer_norm, layer._cross_attention_layer_norm, layer._feedforward_layer_norm)]
    if model.normalize_first:
        norms += [model.encoder_output_layer_norm, model.decoder_output_layer_norm]
    return norms


def _activation(model):
    """CTranslate2's name for the feed-forward activation, the same in every layer."""
    names = {layer.activation.__name__ for layer in model.encoder_layers + model.decoder_layers}
    if len(names) != 1 or next(iter(names)) not in ACTIVATIONS:
        raise UserError(f"CTranslate2 runs {', '.join(ACTIVATIONS)} feed-forward activations (one for every layer); "
                        f"this model has {', '.join(sorted(names))}")
    return ACTIVATIONS[next(iter(names))]


def transformer_spec(model, tokenizers):
    """A validated ``ctranslate2.specs.TransformerSpec`` holding the weights of a ``transformer``
    model (``xling_zoo.models.transformer.TransformerSeq2Seq``) and its tokenizers' vocabularies."""
    import_ctranslate2()
    from ctranslate2.specs import common_spec
    from ctranslate2.specs import transformer_spec as specs

    epsilons = {norm.epsilon for norm in _layer_norms(model)}
    if len(epsilons) != 1:
        raise UserError(f"CTranslate2 gives every layer norm one epsilon; this model has {sorted(epsilons)}")
    spec = specs.TransformerSpec.from_config(
        (model.num_encoder_layers, model.num_decoder_layers), model.num_heads, pre_norm=model.normalize_first,
        activation=getattr(common_spec.Activation, _activation(model)))

    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _numpy(model.source_embedding.embeddings)
    encoder.position_encodings.encodings = _numpy(model.source_position_embedding.position_embeddings)
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        _set_attention(layer_spec.self_attention, layer._self_attention_layer, layer._self_attention_layer_norm,
                       self_attention=True)
        _set_feedforward(layer_spec.ffn, layer)
    decoder.embeddings.weight = _numpy(model.target_embedding.embeddings)
    decoder.position_encodings.encodings = _numpy(model.target_position_embedding.position_embeddings)
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        _set_attention(layer_spec.self_attention, layer._self_attention_layer, layer._self_attention_layer_norm,
                       self_attention=True)
        _set_attention(layer_spec.attention, layer._cross_attention_layer, layer._cross_attention_layer_norm,
                       self_attention=False)
        _set_feedforward(layer_spec.ffn, layer)
    if model.normalize_first:
        _set_layer_norm(encoder.layer_norm, model.encoder_output_layer_norm)
        _set_layer_norm(decoder.layer_norm, model.decoder_output_layer_norm)
    # Tied: logits = x E^T + bias (LogitsBias), one matrix that the spec stores once (it aliases equal weights).
    projection = model.target_embedding.embeddings if model.tie_embeddings else tf.transpose(model.logits.kernel)
    decoder.projection.weight = np.ascontiguousarray(_numpy(projection))
    bias = _numpy(model.logits.bias).copy()
    bias[[PAD_ID, BOS_ID]] += FORBIDDEN_LOGIT_BIAS
    decoder.projection.bias = bias

    source, target = tokenizers.source, tokenizers.target
    spec.register_source_vocabulary(source.pieces())
    spec.register_target_vocabulary(target.pieces())
    spec.config.unk_token = target.id_to_piece(UNK_ID)
    spec.config.bos_token = target.id_to_piece(BOS_ID)
    spec.config.eos_token = target.id_to_piece(EOS_ID)
    spec.config.decoder_start_token = target.id_to_piece(BOS_ID)
    spec.config.add_source_bos = False
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = float(next(iter(epsilons)))
    spec.validate()
    return spec


# === The export ===

def export_run(workdir, export_dir=None, quantization="float32", which="best", target_language=None,
               check_sentences=16):
    """Writes the CTranslate2 model folder and returns its path (a str)."""
    ctranslate2 = import_ctranslate2()
    check_quantization(quantization)
    if check_sentences < 0:
        raise UserError(f"--check_sentences must be >= 0, got {check_sentences}")
    # Everything that can fail fails before anything is written; the model name before the weights load.
    check_model_name(workdir_lib.load_config(workdir).model_name)
    run = workdir_lib.load_run(workdir, which)
    target_language = target_language_of(run.pair, target_language)
    export_dir = str(export_dir) if export_dir else default_export_dir(workdir, quantization, target_language,
                                                                        run.pair.is_multi_target)
    if not is_local(export_dir):
        raise UserError(f"--export_dir={export_dir}: CTranslate2 loads models from local folders only")
    export_dir = os.path.abspath(export_dir)
    if os.path.lexists(export_dir):
        raise UserError(f"{export_dir} already exists: an export is never overwritten; pass another --export_dir "
                        "or delete it")
    spec = transformer_spec(run.model, run.tokenizers)
    spec.optimize(quantization=quantization)
    metadata = export_metadata(run, target_language, quantization, ctranslate2.__version__)
    checked = check_examples(run, target_language, check_sentences)
    translator = Translator(run.model, run.tokenizers, run.config, beam_size=1, target_language=target_language)
    expected = translator.translate_all(checked)

    parent = os.path.dirname(export_dir)
    staging = os.path.join(parent, f".{os.path.basename(export_dir)}.staging-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(staging)
    except OSError as error:
        raise UserError(f"cannot write to {parent}: {error.strerror}") from None
    try:
        spec.save(staging)
        for file_name, tokenizer in sentencepiece_files(run.tokenizers).items():
            with open(os.path.join(staging, file_name), "wb") as f:
                f.write(tokenizer.model_proto)
        # Loaded back as a user would; greedy agreement with the in-process translator is recorded.
        exported = translate(staging, checked, metadata)
        metadata["checked_sentences"] = len(checked)
        metadata["identical_greedy_translations"] = sum(a == b for a, b in zip(exported, expected, strict=True))
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as f:
            f.write(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
        publish(staging, export_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return export_dir


def sentencepiece_files(tokenizers):
    """File name -> tokenizer, as ``Tokenizers.save`` names them."""
    if tokenizers.joint:
        return {"spm.model": tokenizers.source}
    return {"source_spm.model": tokenizers.source, "target_spm.model": tokenizers.target}


def export_metadata(run, target_language, quantization, ctranslate2_version):
    """What a caller needs besides the model: how to build the source tokens and which options to pass."""
    config, tokenizers = run.config, run.tokenizers
    files = list(sentencepiece_files(tokenizers))
    tags = {}
    if config.data.target_language_tag:
        tags = {lang: language_tag(lang) for lang in run.pair.target_languages}
    return {
        "format": "ctranslate2", "ctranslate2_version": ctranslate2_version, "quantization": quantization,
        "workdir": workdir_lib.absolute(run.workdir), "checkpoint": run.checkpoint, "model_name": config.model_name,
        "pair": config.pair, "target_language": target_language,
        "sentencepiece": {"source": files[0], "target": files[-1]},
        "normalize_whitespace": "before tokenizing, every run of Unicode whitespace (Python's str.isspace) "
                                "becomes one space and both ends are stripped: \" \".join(text.split())",
        # The encoder reads source_prefix + pieces + </s>; CTranslate2 adds the </s> (config.json add_source_eos).
        "source_prefix": [tags[target_language]] if tags else [],
        "target_language_tags": tags,
        "special_tokens": {name: tokenizers.target.id_to_piece(i) for name, i in
                           (("pad", PAD_ID), ("unk", UNK_ID), ("bos", BOS_ID), ("eos", EOS_ID))},
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        # Keyword arguments of ctranslate2.Translator.translate_batch that decode as xling_zoo's greedy search.
        "translate_batch": {"beam_size": 1, "max_input_length": int(config.data.max_length),
                            "max_decoding_length": int(config.eval.max_decode_length)},
        "xling_zoo_beam": {"beam_size": int(config.eval.beam_size), "length_penalty": float(config.eval.length_penalty),
                           "note": "xling_zoo's length penalty is GNMT's ((5 + length) / 6) ** alpha; CTranslate2's "
                                   "length_penalty divides by length ** alpha, so beam results may differ"},
    }


def check_examples(run, target_language, count):
    """The first ``count`` non-empty validation sources."""
    if not count:
        return []
    pair = corpus.Pair(run.pair.source_languages, (target_language,))
    examples = corpus.read_split(run.config.corpus, pair, "validation",
                                 skip_bad_lines=run.config.get("skip_bad_lines", False),
                                 data_dir=run.config.data_dir or None)
    return [e["source"] for e in examples if e["source"].strip()][:count]


def source_tokens(sentences, sentencepiece, metadata):
    """Source sentences -> CTranslate2 source tokens (the </s> is added by the model)."""
    normalised = [t.decode("utf-8") for t in normalize_whitespace(tf.constant(sentences, tf.string)).numpy()] \
        if sentences else []
    return [metadata["source_prefix"] + sentencepiece.encode(s, out_type=str) for s in normalised]


def translate(model_dir, sentences, metadata=None, intra_threads=1, **options):
    """Translates with the exported model as the README shows (greedy by default): list of str in
    and out. Used to check an export before it is published, and by the tests."""
    import ctranslate2
    import sentencepiece

    if metadata is None:
        with open(os.path.join(model_dir, METADATA_FILE), encoding="utf-8") as f:
            metadata = json.load(f)
    if not sentences:
        return []
    source_model = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(model_dir, metadata["sentencepiece"]["source"]))
    target_model = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(model_dir, metadata["sentencepiece"]["target"]))
    translator = ctranslate2.Translator(model_dir, device="cpu", intra_threads=intra_threads)
    results = translator.translate_batch(source_tokens(sentences, source_model, metadata),
                                         **{**metadata["translate_batch"], **options})
    return [target_model.decode(result.hypotheses[0]) for result in results]


# Flags of python -m xling_zoo.export that only the SavedModel export reads.
SAVEDMODEL_ONLY_FLAGS = ("version", "beam_size", "max_input_bytes", "split_long_sentences")


def main(flag_values):
    """``python -m xling_zoo.export --format=ctranslate2 ...`` (flags defined in export.py)."""
    given = [f"--{name}" for name in SAVEDMODEL_ONLY_FLAGS if flag_values[name].present]
    if given:
        raise UserError(f"{', '.join(given)}: for --format=savedmodel only, not --format=ctranslate2")
    destination = export_run(flag_values.workdir, flag_values.export_dir, flag_values.quantization or "float32",
                             flag_values.checkpoint, flag_values.target_language, flag_values.check_sentences)
    with open(os.path.join(destination, METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    print(f"Exported {metadata['model_name']} {metadata['pair']} into {metadata['target_language']} to {destination} "
          f"(CTranslate2 {metadata['ctranslate2_version']}, {metadata['quantization']} weights)")
    if metadata["checked_sentences"]:
        print(f"  checked: {metadata['identical_greedy_translations']} of {metadata['checked_sentences']} validation "
              "sentences get our greedy translation")
    print(f"  source tokens: {metadata['source_prefix']} + the pieces of {metadata['sentencepiece']['source']} "
          f"(CTranslate2 adds {metadata['special_tokens']['eos']}); translate_batch options and the rest: "
          f"{os.path.join(destination, METADATA_FILE)}")
