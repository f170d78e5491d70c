"""Translate lines from stdin to stdout with a trained run: ``python -m xling_zoo.translate --workdir=DIR``.

One output line per input line (an empty line stays empty), in order. A line needing more source
tokens than the model was trained on (data.max_length) is translated from its beginning, with a
warning on stderr naming the line.
"""

import sys

from absl import flags

from xling_zoo import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (trained with python -m xling_zoo.train).", required=True)
flags.DEFINE_integer("beam_size", None, "Beam width (default: the run's eval.beam_size; 1 = greedy).")
flags.DEFINE_integer("batch_size", 64, "Sentences translated together.")
flags.DEFINE_bool("jit_compile", False, "Compile the decoder with XLA (pays off on long inputs).")
flags.DEFINE_string("target_language", None, "Language to write, for a run with several targets (--pair=en-de,nl,fr).")
cli.define_thread_flags()


def translate_lines(run, lines, beam_size=None, batch_size=64, jit_compile=False, target_language=None):
    from xling_zoo.decode import Translator
    from xling_zoo.errors import UserError

    translator = Translator(run.model, run.tokenizers, run.config, beam_size=beam_size, jit_compile=jit_compile,
                            target_language=target_language)
    if batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {batch_size}")
    texts = [line.rstrip("\n") for line in lines]
    nonempty = [i for i, t in enumerate(texts) if t.strip()]
    limit = run.config.data.max_length
    for i, length in translator.overlength([texts[i] for i in nonempty]):
        print(f"warning: line {nonempty[i] + 1} has {length} source tokens; the model reads at most "
              f"{limit} (data.max_length), so only its beginning is translated", file=sys.stderr)
    outputs = [""] * len(texts)
    for i, translation in zip(nonempty, translator.translate_all([texts[i] for i in nonempty], batch_size)):
        outputs[i] = translation
    return outputs


def main(argv):
    from xling_zoo.errors import UserError
    from xling_zoo.workdir import load_run

    from xling_zoo.decode import target_language_of

    run = load_run(FLAGS.workdir)  # Before reading stdin: a bad --workdir or language fails at once.
    target_language_of(run.pair, FLAGS.target_language)
    lines = cli.read_stdin_lines()
    if not any(line.strip() for line in lines):
        raise UserError("stdin is empty: pipe the sentences to translate, one per line "
                        f"(echo 'Save the file' | python -m xling_zoo.translate --workdir={FLAGS.workdir})")
    for translation in translate_lines(run, lines, FLAGS.beam_size, FLAGS.batch_size, FLAGS.jit_compile,
                                       FLAGS.target_language):
        print(cli.one_line(translation))


if __name__ == "__main__":
    cli.run(main)
