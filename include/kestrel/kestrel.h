// kestrel/kestrel.h: the whole public API.
#pragma once

#include "kestrel/chat.h"
#include "kestrel/chat_output.h"
#include "kestrel/decoder.h"
#include "kestrel/engine.h"
#include "kestrel/error.h"
#include "kestrel/model.h"
#include "kestrel/parallel.h"
#include "kestrel/session.h"
#include "kestrel/tokenizer.h"
#include "kestrel/types.h"
