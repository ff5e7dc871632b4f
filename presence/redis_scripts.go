package presence

import (
	_ "embed"

	"github.com/redis/rueidis"
)

// Every write is one Lua script, in its own file under lua/ headed by its
// KEYS/ARGV contract. Each is safe to run twice (a retry after a broken
// connection): switches and messages by an operation key kept opKeep, tab
// changes by being idempotent, merges by only moving fields forward.
var (
	//go:embed lua/switch.lua
	switchLua string
	//go:embed lua/say.lua
	sayLua string
	//go:embed lua/tab.lua
	tabLua string
	//go:embed lua/beat.lua
	beatLua string
	//go:embed lua/restore.lua
	restoreLua string
	//go:embed lua/mergefeed.lua
	mergeFeedLua string
	//go:embed lua/reap.lua
	reapLua string
	//go:embed lua/retire.lua
	retireLua string
	//go:embed lua/claimhook.lua
	claimHookLua string
	//go:embed lua/takehooks.lua
	takeHooksLua string

	switchScript    = rueidis.NewLuaScript(switchLua)
	sayScript       = rueidis.NewLuaScript(sayLua)
	tabScript       = rueidis.NewLuaScript(tabLua)
	beatScript      = rueidis.NewLuaScript(beatLua)
	restoreScript   = rueidis.NewLuaScript(restoreLua)
	mergeFeedScript = rueidis.NewLuaScript(mergeFeedLua)
	reapScript      = rueidis.NewLuaScript(reapLua)
	retireScript    = rueidis.NewLuaScript(retireLua)
	claimHookScript = rueidis.NewLuaScript(claimHookLua)
	takeHooksScript = rueidis.NewLuaScript(takeHooksLua)
)
