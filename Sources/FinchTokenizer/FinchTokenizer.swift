// Placeholder; replaced by the tokenizer.
import FinchFormats
