import CFinchKernels
import CDNNL
import COpenBLAS
