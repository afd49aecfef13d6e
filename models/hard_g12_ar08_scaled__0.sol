# sprkit 0.1.0 certified optimum (branch and bound, gap <= 1e-9)
instance hard_g12_ar08_scaled.npz
lam0 9.879405918825758e-05
lam2 999.9999999999999
M 4e-05
objective 0.001462370088915056
bound 0.0014623700881838725
kept 2 3 6 9 10
checked scip 0.001462370088915056
