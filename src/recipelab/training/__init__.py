from recipelab.training.module import RecipeModule, predict_proba
from recipelab.training.optim import param_groups_weight_decay
from recipelab.training.penalties import Regularizer

__all__ = ["RecipeModule", "Regularizer", "param_groups_weight_decay", "predict_proba"]
