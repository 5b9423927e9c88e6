"""`toto-robot study`: the recipe study (docs/study.md): the demo once per recipe, compared in one page.

    toto-robot study                                   # every recipe in configs/study.yaml
    toto-robot study 'select=[patch8,patch8_900]' seeds=[0,1,2] eval_episodes=30
    toto-robot study publish=docs/study                # also copy the page and figures into docs/
    toto-robot study robot_root=~/robot_npz 'robot_kwargs={target_key: ee_pos, target: null}' davis_root=~/data/DAVIS

Top-level demo fields (seeds, eval_episodes, bc_task, ...) set the base every recipe starts from. A
recipe's ``tokenizer`` may name a tokenizer config (``tokenizer: patch``) or give one inline.
"""
from __future__ import annotations

from importlib import resources

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.demo.study import StudyConfig, run_study
from toto_robot.utils.config import ConfigError

STUDY_KEYS = ("recipes", "publish", "select", "out_dir", "cache_dir", "fast", "robot_root", "robot_kwargs", "davis_root", "davis_kwargs")


def tokenizer_entry(value):
    """``patch`` -> the tokenizer group's ``patch.yaml`` as a dict; dicts pass through."""
    if not isinstance(value, str):
        return value
    path = resources.files("toto_robot.configs") / "tokenizer" / f"{value}.yaml"
    if not path.is_file():
        names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("toto_robot.configs") / "tokenizer").iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"unknown tokenizer {value!r} in a study recipe; known: {', '.join(names)}")
    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)


@hydra.main(config_path="pkg://toto_robot.configs", config_name="study", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    c.pop("hydra", None)
    study = {k: c.pop(k) for k in STUDY_KEYS if k in c}
    if study.get("davis_root") and "robot_roots" in c:  # a real-footage study (configs/study_real.yaml): every recipe scores the DAVIS folder
        c["davis_root"] = study["davis_root"]
    recipes = {name: {k: tokenizer_entry(v) if k == "tokenizer" else v for k, v in (over or {}).items()}
               for name, over in study.pop("recipes").items()}
    page = run_study(StudyConfig(base=c, recipes=recipes, **study))
    print(f"\nstudy: {page}")


if __name__ == "__main__":
    main()
