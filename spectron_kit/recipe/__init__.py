"""What the recipes share, in these modules:

- :mod:`spectron_kit.recipe.config`: the one loader of a recipe's command line and YAML
  (:func:`load_recipe`), checked overrides and the small ``__base__`` / ``__add__`` dialect;
  its ``--help`` (the YAML's keys with defaults and comments) is :mod:`spectron_kit.recipe.help`;
- :mod:`spectron_kit.recipe.runtime`: the one-line error policy, one run per output folder,
  the allocator setting of CPU runs, threads per job of runs side by side;
- :mod:`spectron_kit.recipe.checkpoints`: training clock and RNG state in checkpoints, broken and
  non-finite checkpoints, the settings a resumed run must keep.

Everything is importable from ``spectron_kit.recipe`` directly.
"""
from spectron_kit.recipe.checkpoints import (SHAPE_KEYS, RandomState, TrainingClock, check_resume_settings,
                                             checkpoint_problem, nonfinite_weights, set_aside_broken_checkpoints)
from spectron_kit.recipe.config import (ADD_KEY, BASE_KEY, LoadedRecipe, RecipeConfigError, TrainingDiverged,
                                        check_overrides, declared_keys, load_recipe, overrides_to_yaml,
                                        parse_overrides, replace_blocks, resolve_base, yaml_defaults,
                                        yaml_defaults_text)
from spectron_kit.recipe.help import RecipeHelp, recipe_help, recipe_keys
from spectron_kit.recipe.runtime import (INTERRUPTED, check_output_folder, command_line, exit_on_config_error,
                                         interrupts_deferred, lock_run_folder,
                                         quiet_library_loggers, release_run_folder, reuse_freed_memory,
                                         threads_per_job)

__all__ = ["ADD_KEY", "BASE_KEY", "INTERRUPTED", "SHAPE_KEYS", "LoadedRecipe", "RandomState", "RecipeConfigError",
           "RecipeHelp", "recipe_help", "recipe_keys",
           "TrainingClock", "TrainingDiverged", "check_output_folder", "check_overrides", "check_resume_settings",
           "checkpoint_problem", "command_line", "declared_keys", "exit_on_config_error", "interrupts_deferred", "load_recipe", "lock_run_folder",
           "nonfinite_weights", "overrides_to_yaml", "parse_overrides", "quiet_library_loggers", "release_run_folder",
           "replace_blocks", "resolve_base", "reuse_freed_memory", "set_aside_broken_checkpoints", "threads_per_job", "yaml_defaults",
           "yaml_defaults_text"]
