"""keras_contrast.models: encoders, heads, trainers and evaluation."""
from keras_contrast.models.resnet import ResNet
from keras_contrast.models.backbones import ApplicationBackbone
from keras_contrast.models.backbones import ApplicationPreprocessing
from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.trainer import ContrastiveTrainer
from keras_contrast.models.trainer import ContrastPair
from keras_contrast.models.trainer import BaseOutputs
from keras_contrast.models.simclr import SimCLRModel
from keras_contrast.models.supcon_model import SupConModel
from keras_contrast.models.moco import MoCoModel
from keras_contrast.models.byol import BYOLModel
from keras_contrast.models.queue import KeyQueue
from keras_contrast.models.linear_eval import LinearClassifier
from keras_contrast.models.linear_eval import linear_evaluation
from keras_contrast.models.imclr import ImCLRClassifier
from keras_contrast.models.callbacks import AtomicBackupAndRestore
from keras_contrast.models.callbacks import KNNAccuracy
