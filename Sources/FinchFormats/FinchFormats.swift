// Placeholder; replaced by the GGUF/safetensors readers.
import FinchCore
