from recipelab.training.module import RecipeModule
from recipelab.training.optim import param_groups_weight_decay
from recipelab.training.penalties import Regularizer
from recipelab.training.predict import nll, predict_proba

__all__ = ["RecipeModule", "Regularizer", "nll", "param_groups_weight_decay", "predict_proba"]
