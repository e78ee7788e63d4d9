"""Several MTL runs per arm (``mtl.seeds``, issue 18 item 5): finetuning seed i starts from MTL run i mod k,
teachers take the MTL run of their own seed, and one MTL run (``mtl.seed``) stays the default. ELECTRA's
base finetuning settings apply to blog 6b at the paper scale only (``scale_overrides``)."""

from __future__ import annotations

import pytest

from road_repro.config import MTLRow, load_profile, load_table_spec
from road_repro.errors import ConfigError
from road_repro.experiments.tables import TableRunner


class _Recorder:
    """Stands in for an Experiment: records which MTL seed each finetuning run starts from."""

    def __init__(self, overrides: list[str]):
        self.profile = load_profile("smoke", overrides)

    def mtl(self, model_key, mode, pass_step=None, kd=False, steps_fraction=1.0, seed=None):
        return ("mtl", mode, seed)

    def finetune(self, task, model_key, seed, objective=None, teachers=(), init=None, **kwargs):
        return ("finetune", seed, init)


@pytest.mark.parametrize("seeds, expected", [([], [None, None, None]), ([7, 8], [7, 8, 7])])
def test_finetuning_seeds_take_the_mtl_runs_in_turn(seeds, expected):
    runner = TableRunner(_Recorder([f"mtl.seeds={seeds}"]), load_table_spec("table4"))
    assert [runner._init("large", MTLRow(mode="road"), s)[2] for s in (1, 2, 3)] == expected
    assert runner._init("large", None, 1) is None


def test_teachers_take_the_mtl_run_of_their_own_seed():
    spec = load_table_spec("table5")
    runner = TableRunner(_Recorder(["mtl.seeds=[7,8]"]), spec)
    weighted = next(r for r in spec.rows if r.method == "weighted KD")
    assert [t[2][2] for t in runner._teachers(weighted, "squad_v2", "large")] == [7, 8, 7]


def test_duplicate_mtl_seeds_are_named():
    with pytest.raises(ConfigError, match=r"mtl.seeds=\[1, 1\] has duplicates"):
        load_profile("smoke", ["mtl.seeds=[1,1]"])


def test_electra_base_settings_only_at_the_paper_scale():
    spec = load_table_spec("blog_other_tasks")
    paper, smoke = load_profile("paper", table=spec).finetune, load_profile("smoke", table=spec).finetune
    assert (paper.lr, paper.layerwise_lr_decay, paper.layerwise_convention, paper.epochs, paper.batch_size,
            paper.warmup_ratio, paper.weight_decay) == (1e-4, 0.8, "electra", 3.0, 32, 0.1, 0.0)
    assert smoke == load_profile("smoke").finetune  # smoke keeps its own settings
    assert load_profile("paper", table=load_table_spec("blog_final")).finetune.lr == 5e-5  # Table 8 elsewhere
