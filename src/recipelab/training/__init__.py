from recipelab.training.module import RecipeModule, predict_proba
from recipelab.training.optim import param_groups_weight_decay

__all__ = ["RecipeModule", "param_groups_weight_decay", "predict_proba"]
