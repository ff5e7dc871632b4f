package presence

// LocalRegion is the app region when FLY_REGION is unset.
const LocalRegion = "local"

// cities names the Fly.io region codes. A code missing here is not trusted
// from a request header (it is client-controlled off Fly) and shows as
// unknown.
var cities = map[string]string{
	LocalRegion: "Localhost",
	"ams":       "Amsterdam",
	"arn":       "Stockholm",
	"atl":       "Atlanta",
	"bog":       "Bogotá",
	"bom":       "Mumbai",
	"bos":       "Boston",
	"cdg":       "Paris",
	"den":       "Denver",
	"dfw":       "Dallas",
	"ewr":       "Secaucus",
	"eze":       "Buenos Aires",
	"fra":       "Frankfurt",
	"gdl":       "Guadalajara",
	"gig":       "Rio de Janeiro",
	"gru":       "São Paulo",
	"hkg":       "Hong Kong",
	"iad":       "Ashburn",
	"jnb":       "Johannesburg",
	"lax":       "Los Angeles",
	"lhr":       "London",
	"mad":       "Madrid",
	"mia":       "Miami",
	"nrt":       "Tokyo",
	"ord":       "Chicago",
	"otp":       "Bucharest",
	"phx":       "Phoenix",
	"qro":       "Querétaro",
	"scl":       "Santiago",
	"sea":       "Seattle",
	"sin":       "Singapore",
	"sjc":       "San Jose",
	"syd":       "Sydney",
	"waw":       "Warsaw",
	"yul":       "Montreal",
	"yyz":       "Toronto",
}

// KnownRegion reports whether code is a region this app knows.
func KnownRegion(code string) bool {
	_, ok := cities[code]
	return ok
}

// City names a region code for display; an unknown code shows as itself.
func City(code string) string {
	if c, ok := cities[code]; ok {
		return c
	}
	if code == "" {
		return "somewhere"
	}
	return code
}
