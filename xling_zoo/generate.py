"""Continue prompts from stdin with a language model run: ``python -m xling_zoo.generate --workdir=runs/lm-nl``.

One output line per input line, in order: the prompt followed by its continuation (greedy by
default; ``--temperature`` samples, ``--beam_size`` searches). An empty line is continued from the
start of a sentence. A prompt longer than the model's inputs keeps its last pieces, with a warning.
"""

import sys

from absl import flags

from xling_zoo import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A language model's run directory (python -m xling_zoo.train --model=lm).",
                    required=True)
flags.DEFINE_integer("max_new_tokens", None, "Pieces added at most per prompt (default: the run's "
                     "eval.max_decode_length).")
flags.DEFINE_integer("beam_size", 1, "Beam width (1 = greedy or sampled).")
flags.DEFINE_float("temperature", 0.0, "Sample each piece from the model's distribution sharpened by this "
                   "(0 = the most likely piece).")
flags.DEFINE_integer("top_k", 0, "With --temperature: sample among the k most likely pieces only (0 = all).")
flags.DEFINE_integer("seed", 0, "With --temperature: the seed (the same seed draws the same continuations).")
flags.DEFINE_integer("batch_size", 64, "Prompts continued together.")
cli.define_thread_flags()


def continue_lines(run, lines, **options):
    from xling_zoo.decode import Continuer

    batch_size = options.pop("batch_size", 64)
    continuer = Continuer(run.model, run.tokenizers, run.config, **options)
    prompts = [line.rstrip("\n") for line in lines]
    for i, length in continuer.prompts_cut(prompts):
        print(f"warning: line {i + 1} has {length} pieces; the model reads at most {continuer.max_prompt} "
              "(data.max_length - 1), so it continues the last of them", file=sys.stderr)
    return continuer.continue_all(prompts, batch_size)


def main(argv):
    from xling_zoo.errors import UserError
    from xling_zoo.workdir import load_run

    run = load_run(FLAGS.workdir)  # Before reading stdin: a bad --workdir fails at once.
    if run.model.task_type != "lm":
        raise UserError(f"--workdir={FLAGS.workdir} holds a {run.config.model_name} run, which continues no text: "
                        "give a language model's run (python -m xling_zoo.train --model=lm); a translator "
                        "translates with python -m xling_zoo.translate")
    lines = cli.read_stdin_lines()
    if not lines:
        raise UserError("stdin is empty: pipe the prompts to continue, one per line "
                        f"(echo 'Het bestand' | python -m xling_zoo.generate --workdir={FLAGS.workdir})")
    for text in continue_lines(run, lines, max_new_tokens=FLAGS.max_new_tokens, beam_size=FLAGS.beam_size,
                               temperature=FLAGS.temperature, top_k=FLAGS.top_k, seed=FLAGS.seed,
                               batch_size=FLAGS.batch_size):
        print(cli.one_line(text))  # A sampled piece may be a line break.


if __name__ == "__main__":
    cli.run(main)
