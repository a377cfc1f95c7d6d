from recipelab.training.module import RecipeModule, nll, predict_proba
from recipelab.training.optim import param_groups_weight_decay
from recipelab.training.penalties import Regularizer

__all__ = ["RecipeModule", "Regularizer", "nll", "param_groups_weight_decay", "predict_proba"]
