#include "CFinchFuzz.h"
