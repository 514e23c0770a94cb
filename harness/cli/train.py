"""`scripts/train.py`, `scripts/score.py`, `scripts/prepare.py`: the run config (errors before any
work), then the library."""

from __future__ import annotations

from harness.cli.common import entry_point, options_of
from harness.compat import is_original_cli, translate_original_cli
from harness.config import config_to_yaml
from harness.console import print_error_once
from harness.hub_refs import resolve_run_refs
from harness.run_config import RUN_CONFIG_USAGE, build_parser, config_of, parse_namespace
from harness.run_folder import check_run_paths

# The --help texts. `harness.distributed` (torch) is imported after parsing: --help is instant.
TRAIN_HELP = """\
Train a language model on a scored corpus with one of the paper's objectives (mle, filtering,
conditional, ul, rwr, awr: --objective.name), or resume it: rerunning the same command continues
from the latest checkpoint.

    deepspeed --num_gpus 2 scripts/train.py --config configs/pep8_mle.yaml \\
        --train.lr 3e-4 --run.name pep8_mle_lr3e-4

The run config is --config YAML files merged in order, then --SECTION.KEY overrides (listed
below by section); --print_config prints the result and exits. The data stage (score, train the
BPE tokenizer, pack) runs first unless scripts/prepare.py already did it; its files are cached
in data.cache_dir. Outputs go to run.output_dir (default runs/<run.name>): config.yaml,
metrics.jsonl, checkpoints/, eval/step-XXXXXXXX/ and hf/ (a Hugging Face export)."""

ORIGINAL_CLI_HELP = """\
The original PHF code's command line works too: its task and method configs are translated into
a native run config (notes on keys that differ go to stderr) and run as above; native arguments
given beside them (--config, --SECTION.KEY, --print_config) still apply on top.

  --task T.yml          the original's task config (YAML)
  --method M.yml        the original's method config (YAML), merged over --task
  --override a.b=c ...  set keys of the merged original config
  --run_name NAME       wandb run name (run.name)
  --group_name NAME     wandb group (WANDB_RUN_GROUP)
  --tags TAG ...        wandb tags (WANDB_TAGS)
  --checkpoint_path P   not supported: rerun the same command to resume

    python scripts/train.py --task configs/original/toxicity/pretrain.yml \\
        --method configs/original/toxicity/mle.yml \\
        --override training.learning_rate=5e-4

scripts/convert_config.py writes the translated config to a YAML file."""

SCORE_HELP = """\
Score a corpus with the task's scorer into deterministic Parquet shards in the paper's schema
(id, texts, scores, avg_score, num_sents): the first data stage of training, on its own. All
ranks of a launch share the work; rerunning skips finished shards.

    deepspeed --num_gpus 2 scripts/score.py --config configs/pep8_mle.yaml

The corpus and the scorer are the run config's data section (below). Shards go to
data.scored_dir (default <data.cache_dir>/scored/<corpus key>-<scorer>-<options hash>), whose
data/ folder loads with datasets.load_dataset("parquet", data_dir=...); the command prints it."""

PREPARE_HELP = """\
Prepare a run's data before training, as a training launch would but on a local pool of
workers, SLURM job arrays or a Ray cluster: score the corpus, train the BPE tokenizer (unless
data.tokenizer names one) and pack the token blocks.

    python scripts/prepare.py --config configs/pep8_awr.yaml \\
        --executor slurm --partition cpu --workers 64 --wait

Everything goes to the data cache, data.cache_dir (default .cache/phf), and the command prints
where; then `deepspeed scripts/train.py --config configs/pep8_awr.yaml` finds it and starts
training in seconds. With --executor slurm it submits the jobs and returns (--wait: waits for
them); rerun the same command to resubmit what is left."""

PREPARE_USAGE = f"{RUN_CONFIG_USAGE}\n{' ' * 18}[--executor {{local,slurm,ray}}] [--workers N] ..."


@entry_point
def train_main(argv: list[str]) -> int:
    """`scripts/train.py`: train (or resume) a run."""
    show = "--print_config" in argv
    argv = [a for a in argv if a != "--print_config"]
    if is_original_cli(argv):  # the original PHF code's --task/--method/--override interface
        argv = translate_original_cli(argv)
    ns = parse_namespace(build_parser("train.py", TRAIN_HELP, epilog=ORIGINAL_CLI_HELP), argv)
    from harness import distributed as dist

    cfg = config_of(ns, world_size=dist.env_world_size())
    if show:
        print(config_to_yaml(cfg), end="")
        return 0
    from harness.engine import train  # torch, DeepSpeed and transformers: after the config checks
    from harness.faults import exit_code

    train(cfg)
    dist.shutdown_distributed()
    return exit_code()  # 130 after Ctrl-C (saved), else 0


@entry_point
def score_main(argv: list[str]) -> int:
    """`scripts/score.py`: score the corpus into Parquet shards (all ranks share the work)."""
    ns = parse_namespace(build_parser("score.py", SCORE_HELP), argv)
    from harness import distributed as dist
    from harness.data.pipeline import plan_corpus, run_scoring

    cfg = config_of(ns, world_size=dist.env_world_size())
    dist.configure_logging()
    check_run_paths(cfg)
    resolve_run_refs(cfg)
    plan, _ = plan_corpus(cfg)  # metadata only: bad input fails before any process group
    dist.init_distributed()
    folder, manifest, _ = run_scoring(cfg, plan)
    if dist.is_main():
        print(
            f"scored {manifest.rows} documents into {manifest.job.num_shards} shards under {folder}"
        )
    dist.shutdown_distributed()
    return 0


@entry_point
def prepare_main(argv: list[str]) -> int:
    """`scripts/prepare.py`: score and pack a corpus on a local pool, SLURM or Ray."""
    from harness.data.prepare import ClusterOptions, prepare

    parser = build_parser("prepare.py", PREPARE_HELP, usage=PREPARE_USAGE)
    # One flag per field of ClusterOptions (its docstrings are the help); --wait stays a bare flag.
    parser.add_class_arguments(ClusterOptions, as_group=False, skip={"wait", "sbatch_args"})
    wait_help = "slurm: wait for the jobs; exit 1 naming a failed task"
    parser.add_argument("--wait", action="store_true", help=wait_help)
    ns = parse_namespace(parser, argv)
    cfg = config_of(ns)
    cluster = options_of(ns, ClusterOptions)  # sbatch_args has no flag: its default
    from harness import distributed as dist

    dist.configure_logging()
    check_run_paths(cfg)
    resolve_run_refs(cfg)
    from harness.data.ray_stages import TaskFailed
    from harness.data.worker_watch import WorkerDied

    try:
        print(prepare(cfg, cluster))
    except (WorkerDied, TaskFailed) as err:  # one line, not a traceback through datatrove's pool
        print_error_once(str(err))
        return 1
    return 0
