#include "receiver/config.h"
